"""Phrase fingerprints: MinHash signatures of onset-pair landmarks, for telling near-repeats apart.

A learnt search vector is made to ignore dropped, shifted and jittered notes, so a phrase and a
near-repeat of it elsewhere in the song (the same bars with a few notes changed) sit on one point.
A *landmark* is a pair of note onsets at most a beat apart: (instrument group, pitch) of each and
the steps between them. The set of a phrase's landmarks does not move when the phrase is shifted in
time, loses only the pairs of a dropped note, and keeps the pitched instruments merged (a part
moved from piano to guitar keeps its landmarks); two near-repeats share most of theirs, but not
the ones around the notes that differ. The Jaccard similarity of two landmark sets is estimated
by the share of equal components of their MinHash signatures (``hashes`` independent hashes).

Signature values are below 2**24, so they survive a float32 column exactly (the search vectors
carry them that way); a phrase with no landmark gets -1 everywhere and matches nothing.
"""

from __future__ import annotations

import numpy as np

from midivae.constants import BASS, DRUMS, N_PITCHES, PHRASE_SHAPE, STEPS_PER_PHRASE

#: a landmark joins two onsets at most this many steps apart (a beat)
WINDOW = 12
#: instrument groups: drums, the pitched tracks merged, bass
N_GROUPS = 3
_VALUE_BITS = 24
_MAX_LAG = 64  # onsets looked ahead per onset (a beat holds fewer in practice)


def _hash_params(hashes: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd multipliers and offsets of a multiply-shift hash family (fixed: signatures of any two
    runs must compare)."""
    rng = np.random.default_rng(0x1A4D)
    a = rng.integers(1, 1 << 63, hashes, dtype=np.uint64) | np.uint64(1)
    return a, rng.integers(0, 1 << 63, hashes, dtype=np.uint64)


def _onsets(phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phrase, step, group * 84 + pitch) of every onset, sorted by phrase then step."""
    n = phrases.shape[0]
    roll = phrases.reshape(n, STEPS_PER_PHRASE, N_PITCHES, PHRASE_SHAPE[-1])
    pitched = [t for t in range(PHRASE_SHAPE[-1]) if t not in (DRUMS, BASS)]
    merged = roll[..., pitched[0]].copy()
    for t in pitched[1:]:
        merged |= roll[..., t]
    grouped = np.stack([roll[..., DRUMS], merged, roll[..., BASS]], axis=-1)
    onset = grouped.copy()
    onset[:, 1:] &= ~grouped[:, :-1]
    # flatnonzero + unravel: 15x faster than nonzero on a 4-D array here, same (C) order
    ph, step, pitch, group = np.unravel_index(np.flatnonzero(onset), onset.shape)
    return ph, step, group * N_PITCHES + pitch


def landmarks(phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, code)`` of every landmark of a batch of phrases (owner: the phrase's position)."""
    ph, step, key = _onsets(np.asarray(phrases, dtype=bool))
    owners, codes = [], []
    n_keys = N_GROUPS * N_PITCHES
    for lag in range(1, min(_MAX_LAG, len(ph))):
        same = ph[lag:] == ph[:-lag]
        dt = step[lag:] - step[:-lag]
        near = same & (dt <= WINDOW)
        if not near.any():
            break
        ok = near & (dt > 0)
        owners.append(ph[:-lag][ok])
        codes.append((key[:-lag][ok] * n_keys + key[lag:][ok]) * (WINDOW + 1) + dt[ok])
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(owners).astype(np.int64), np.concatenate(codes).astype(np.int64)


def signatures(phrases: np.ndarray, hashes: int = 64) -> np.ndarray:
    """MinHash signatures ``(n, hashes)`` int32 of the phrases' landmark sets (-1: no landmark)."""
    phrases = np.asarray(phrases, dtype=bool)
    out = np.full((phrases.shape[0], hashes), -1, dtype=np.int32)
    owner, code = landmarks(phrases)
    if not code.size:
        return out
    pairs = np.sort((owner << 32) | code)
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # each landmark once per phrase, by phrase
    owner, code = (pairs >> 32).astype(np.int64), (pairs & 0xFFFFFFFF).astype(np.uint64)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    a, b = _hash_params(hashes)
    shift = np.uint64(64 - _VALUE_BITS)
    for j in range(hashes):  # one vectorised pass per hash: (a x + b) mod 2^64, top 24 bits
        h = (a[j] * code + b[j]) >> shift
        out[owner[starts], j] = np.minimum.reduceat(h, starts)
    return out


def similarity(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of landmark sets: the share of equal signature components
    (``query`` ``(..., k)`` against ``candidates`` ``(..., k)``, broadcast; -1 matches nothing)."""
    query = np.asarray(query)
    return ((query == candidates) & (query >= 0)).mean(axis=-1)
