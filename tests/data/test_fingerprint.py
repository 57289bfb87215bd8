"""Landmark fingerprints: shift-invariant, robust to dropped notes and instrument moves, and they
tell a phrase from a near-repeat of it (with note lengths, also one that differs only in them)."""

from __future__ import annotations

import numpy as np

from midivae.constants import BASS, DRUMS, GUITAR, PHRASE_SHAPE, PIANO
from midivae.data.fingerprint import landmarks, signatures, similarity


def _phrase(seed: int, density: float = 0.004) -> np.ndarray:
    """A random phrase of short notes (onsets every few steps) on piano, bass and drums."""
    rng = np.random.default_rng(seed)
    p = np.zeros(PHRASE_SHAPE, dtype=bool)
    roll = p.reshape(192, 84, 5)
    for track in (PIANO, BASS, DRUMS):
        steps = np.flatnonzero(rng.random(192) < 0.25)
        pitches = rng.integers(20, 70, steps.size)
        roll[steps, pitches, track] = True
    return p


def _exact_jaccard(a: np.ndarray, b: np.ndarray, durations: bool = False) -> float:
    (_, ca), (_, cb) = landmarks(a[None], durations), landmarks(b[None], durations)
    sa, sb = set(ca.tolist()), set(cb.tolist())
    return len(sa & sb) / len(sa | sb)


def test_same_phrase_same_signature_and_estimate_tracks_jaccard():
    a, b = _phrase(0), _phrase(1)
    sig = signatures(np.stack([a, a, b]), 256)
    assert (sig >= 0).all() and (sig < 2**24).all()
    assert np.array_equal(sig[0], sig[1]) and similarity(sig[0], sig[1]) == 1.0
    assert abs(similarity(sig[0], sig[2]) - _exact_jaccard(a, b)) < 0.1


def test_shift_drop_and_instrument_move_keep_most_landmarks():
    a = _phrase(2)
    roll = a.reshape(192, 84, 5)
    shifted = np.zeros_like(roll)
    shifted[6:] = roll[:-6]  # an eighth note later
    moved = roll.copy()
    moved[..., GUITAR], moved[..., PIANO] = roll[..., PIANO], False
    dropped = roll.copy()
    on = np.argwhere(roll)
    for t, p, k in on[np.random.default_rng(0).random(len(on)) < 0.2]:
        dropped[t, p, k] = False
    assert _exact_jaccard(a, moved.reshape(PHRASE_SHAPE)) == 1.0
    assert _exact_jaccard(a, shifted.reshape(PHRASE_SHAPE)) > 0.9
    assert _exact_jaccard(a, dropped.reshape(PHRASE_SHAPE)) > 0.45
    # a near-repeat: the same phrase with a few notes changed matches the shifted copy less well
    near = roll.copy()
    near[np.argwhere(roll)[::5][:, 0], :, PIANO] = False
    assert _exact_jaccard(shifted.reshape(PHRASE_SHAPE), a) > _exact_jaccard(shifted.reshape(PHRASE_SHAPE), near.reshape(PHRASE_SHAPE))


def test_a_phrase_without_landmarks_matches_nothing():
    empty = np.zeros((2, *PHRASE_SHAPE), dtype=bool)
    sig = signatures(empty, 16)
    assert (sig == -1).all() and similarity(sig[0], sig[1]) == 0.0


def _held_phrase(seed: int) -> np.ndarray:
    """Piano and bass notes of 1-40 steps (some run to the phrase's end) and one-step drums."""
    rng = np.random.default_rng(seed)
    roll = np.zeros((192, 84, 5), dtype=bool)
    for track in (PIANO, BASS):
        for start in np.flatnonzero(rng.random(192) < 0.15):
            roll[start : start + rng.integers(1, 41), rng.integers(20, 70), track] = True
    roll[np.flatnonzero(rng.random(192) < 0.25), 10, DRUMS] = True
    return roll.reshape(PHRASE_SHAPE)


def test_note_length_buckets_match_a_note_by_note_count():
    from midivae.data.fingerprint import _grouped, _length_buckets, _onsets

    phrases = np.stack([_held_phrase(s) for s in range(3)])
    ph, step, key, grouped = _onsets(phrases)
    got = _length_buckets(grouped, ph, step, key)
    assert got.shape == ph.shape
    for i in np.random.default_rng(0).choice(len(ph), 200, replace=False):
        group, pitch = divmod(int(key[i]), 84)
        column = _grouped(phrases)[ph[i], step[i]:, pitch, group]
        length = int(np.argmin(column)) if not column.all() else len(column)
        want = 0 if group == 0 else min(int(np.ceil(np.log2(length))) + 1, 7)  # 1, 2, 3-4, 5-8, ... 33+
        assert got[i] == want, (i, length)


def test_landmarks_with_note_lengths_tell_held_notes_from_repeated_ones():
    a = _held_phrase(4)
    roll = a.reshape(192, 84, 5)
    # the same onsets, every piano note cut to one step: an onset pair cannot see it, lengths can
    short = roll.copy()
    short[1:, :, PIANO] &= ~roll[:-1, :, PIANO]
    assert _exact_jaccard(a, short.reshape(PHRASE_SHAPE)) == 1.0
    assert _exact_jaccard(a, short.reshape(PHRASE_SHAPE), durations=True) < 0.8
    # an instrument move keeps them, a shift most of them (notes held into the last eighth come
    # out shorter: with notes of up to 40 steps that is ~1 in 5 landmarks)
    shifted = np.zeros_like(roll)
    shifted[6:] = roll[:-6]
    moved = roll.copy()
    moved[..., GUITAR], moved[..., PIANO] = roll[..., PIANO], False
    assert _exact_jaccard(a, moved.reshape(PHRASE_SHAPE), durations=True) == 1.0
    assert _exact_jaccard(a, shifted.reshape(PHRASE_SHAPE), durations=True) > 0.75
    sig = signatures(np.stack([a, a]), 32, durations=True)
    assert (sig >= 0).all() and (sig < 2**24).all() and np.array_equal(sig[0], sig[1])
