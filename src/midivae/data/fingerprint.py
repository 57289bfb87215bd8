"""Phrase fingerprints: MinHash signatures of onset-pair landmarks, for telling near-repeats apart.

A learnt search vector is made to ignore dropped, shifted and jittered notes, so a phrase and a
near-repeat of it elsewhere in the song (the same bars with a few notes changed) sit on one point.
A *landmark* is a pair of note onsets at most a beat apart: (instrument group, pitch) of each and
the steps between them. The set of a phrase's landmarks does not move when the phrase is shifted in
time, loses only the pairs of a dropped note, and keeps the pitched instruments merged (a part
moved from piano to guitar keeps its landmarks); two near-repeats share most of theirs, but not
the ones around the notes that differ. The Jaccard similarity of two landmark sets is estimated
by the share of equal components of their MinHash signatures (``hashes`` independent hashes).

With ``durations`` (the search head's default since session 14) each pitched onset also carries
the length of its note in log2 buckets: near-repeats often differ in how long notes are held,
not in when they start (held chords against repeated ones, a sustained last note), which an
onset pair alone cannot see; a time shift, a dropped note or an instrument move keeps them.

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
#: note-length buckets: 1, 2, 3-4, 5-8, 9-16, 17-32, 33+ steps -> 1..7 (0: drums, whose note
#: lengths in MIDI mean nothing)
LENGTH_BUCKETS = 8


def _hash_params(hashes: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd multipliers and offsets of a multiply-shift hash family (fixed: signatures of any two
    runs must compare)."""
    rng = np.random.default_rng(0x1A4D)
    a = rng.integers(1, 1 << 63, hashes, dtype=np.uint64) | np.uint64(1)
    return a, rng.integers(0, 1 << 63, hashes, dtype=np.uint64)


def _grouped(phrases: np.ndarray) -> np.ndarray:
    """``(n, steps, pitches, N_GROUPS)`` bool: drums, the pitched tracks merged, bass."""
    n = phrases.shape[0]
    roll = phrases.reshape(n, STEPS_PER_PHRASE, N_PITCHES, PHRASE_SHAPE[-1])
    pitched = [t for t in range(PHRASE_SHAPE[-1]) if t not in (DRUMS, BASS)]
    merged = roll[..., pitched[0]].copy()
    for t in pitched[1:]:
        merged |= roll[..., t]
    return np.stack([roll[..., DRUMS], merged, roll[..., BASS]], axis=-1)


def _onsets(phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(phrase, step, group * 84 + pitch) of every onset, sorted by phrase then step, and the
    grouped roll (:func:`_grouped`) they were read from."""
    grouped = _grouped(phrases)
    onset = grouped.copy()
    onset[:, 1:] &= ~grouped[:, :-1]
    # flatnonzero + unravel: 15x faster than nonzero on a 4-D array here, same (C) order
    ph, step, pitch, group = np.unravel_index(np.flatnonzero(onset), onset.shape)
    return ph, step, group * N_PITCHES + pitch, grouped


def _length_buckets(grouped: np.ndarray, ph: np.ndarray, step: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The note-length bucket of each onset ``(ph, step, key)`` of ``grouped`` (0 for drums).

    A note ends at the first step after which its cell is off; the k-th onset of a (phrase,
    pitch, group) column pairs with the k-th end of it, so sorting both by column, then step,
    pairs them without touching the roll again."""
    end = grouped.copy()
    end[:, :-1] &= ~grouped[:, 1:]
    e_ph, e_step, e_pitch, e_group = np.unravel_index(np.flatnonzero(end), end.shape)
    steps = grouped.shape[1]
    column_major = (ph * (N_GROUPS * N_PITCHES) + key) * steps + step
    e_key = (e_ph * (N_GROUPS * N_PITCHES) + e_group * N_PITCHES + e_pitch) * steps + e_step
    order = np.argsort(column_major, kind="stable")
    length = np.empty(len(ph), np.int64)
    length[order] = np.sort(e_key) - column_major[order] + 1
    bucket = np.minimum(np.ceil(np.log2(length)).astype(np.int64) + 1, LENGTH_BUCKETS - 1)
    return np.where(key < N_PITCHES, 0, bucket)  # group 0 (drums) holds keys 0..83


def landmarks(phrases: np.ndarray, durations: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, code)`` of every landmark of a batch of phrases (owner: the phrase's position);
    with ``durations``, each code also holds both notes' length buckets."""
    ph, step, key, grouped = _onsets(np.asarray(phrases, dtype=bool))
    length = _length_buckets(grouped, ph, step, key) if durations else None
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
        code = (key[:-lag][ok] * n_keys + key[lag:][ok]) * (WINDOW + 1) + dt[ok]
        if length is not None:  # < 2**26: still fits the 32 bits signatures() packs it into
            code = (code * LENGTH_BUCKETS + length[:-lag][ok]) * LENGTH_BUCKETS + length[lag:][ok]
        codes.append(code)
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(owners).astype(np.int64), np.concatenate(codes).astype(np.int64)


def signatures(phrases: np.ndarray, hashes: int = 64, durations: bool = False) -> np.ndarray:
    """MinHash signatures ``(n, hashes)`` int32 of the phrases' landmark sets (-1: no landmark);
    ``durations``: landmarks that hold note lengths (see :func:`landmarks`)."""
    phrases = np.asarray(phrases, dtype=bool)
    out = np.full((phrases.shape[0], hashes), -1, dtype=np.int32)
    owner, code = landmarks(phrases, durations)
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
