"""The altered queries of the robustness task: pure numpy functions on phrase batches.

Each takes bool phrases ``(n, 4, 48, 84, 5)`` and returns new ones. Time is one axis of 192
steps, so a note that crosses a bar line is one note. The robustness task drops every query the
alteration leaves unchanged (e.g. moving piano notes in a phrase without piano).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from midivae.constants import DRUMS, GUITAR, N_PITCHES, N_TRACKS, PHRASE_SHAPE, PIANO, PITCHED_TRACKS, STEPS_PER_PHRASE

# transpose() treats every track but drums as pitched.
assert set(PITCHED_TRACKS) == set(range(N_TRACKS)) - {DRUMS}

#: An eighth note at 12 steps per beat.
EIGHTH_NOTE = 6
#: Transpositions tried by the any-key search: 12 distinct shifts of the pitched tracks.
ANY_KEY_SHIFTS: tuple[int, ...] = tuple(range(-5, 7))


def transpose(phrases: np.ndarray, semitones: int) -> np.ndarray:
    """Shift the pitched tracks (not drums) by ``semitones``; notes leaving the 84 pitches drop.

    Works on the ~2% of cells that are on (coordinates), not on the dense array.
    """
    ph = np.asarray(phrases, dtype=bool)
    on = np.flatnonzero(ph)
    track = on % N_TRACKS
    pitch = (on // N_TRACKS) % N_PITCHES
    s = int(semitones)
    pitched = track != DRUMS
    new_pitch = pitch + np.where(pitched, s, 0)
    ok = (new_pitch >= 0) & (new_pitch < N_PITCHES)
    out = np.zeros(ph.shape, dtype=bool)
    out.reshape(-1)[on[ok] + (new_pitch[ok] - pitch[ok]) * N_TRACKS] = True
    return out


def move_track(phrases: np.ndarray, src: int = PIANO, dst: int = GUITAR) -> np.ndarray:
    """Re-orchestrate: the notes of track ``src`` join track ``dst``; ``src`` becomes silent."""
    out = np.asarray(phrases, dtype=bool).copy()
    out[..., dst] |= out[..., src]
    out[..., src] = False
    return out


def time_shift(phrases: np.ndarray, steps: int = EIGHTH_NOTE, previous: np.ndarray | None = None) -> np.ndarray:
    """Delay the music by ``steps``: the window starts ``steps`` earlier in the song.

    ``previous`` holds each phrase's preceding phrase in the song where the two are contiguous
    (all False otherwise), so the first ``steps`` steps carry what really sounded there and the
    last ``steps`` steps of the phrase fall out of the window, as in a real off-grid excerpt.
    """
    ph = np.asarray(phrases, dtype=bool)
    n = len(ph)
    flat = ph.reshape(n, STEPS_PER_PHRASE, N_PITCHES, N_TRACKS)
    prev = np.zeros_like(flat) if previous is None else np.asarray(previous, dtype=bool).reshape(flat.shape)
    joined = np.concatenate([prev[:, STEPS_PER_PHRASE - steps :], flat[:, : STEPS_PER_PHRASE - steps]], axis=1)
    return joined.reshape(ph.shape)


def drop_notes(phrases: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Remove ``fraction`` of each phrase's notes (at least one), whole notes at random."""
    ph = np.asarray(phrases, dtype=bool)
    n = len(ph)
    flat = ph.reshape(n, STEPS_PER_PHRASE, -1)
    out = flat.copy()
    # Onsets and offsets along time for every (phrase, cell column): a note is a run of True steps.
    padded = np.zeros((n, STEPS_PER_PHRASE + 2, flat.shape[2]), dtype=np.int8)
    padded[:, 1:-1] = flat
    change = np.diff(padded, axis=1)
    on_p, on_c, on_t = np.nonzero(np.moveaxis(change == 1, 1, 2))  # sorted by phrase, column, time
    _, _, off_t = np.nonzero(np.moveaxis(change == -1, 1, 2))
    # after moveaxis the order is (phrase, column, time): the k-th onset and k-th offset pair up
    starts_of = np.searchsorted(on_p, np.arange(n + 1))
    for i in range(n):
        a, b = starts_of[i], starts_of[i + 1]
        count = b - a
        if count == 0:
            continue
        k = max(1, int(round(fraction * count)))
        for j in a + rng.choice(count, size=k, replace=False):
            out[i, on_t[j] : off_t[j], on_c[j]] = False
    return out.reshape(ph.shape)


def changed(original: np.ndarray, altered: np.ndarray) -> np.ndarray:
    """Per phrase: does the alteration change anything?"""
    n = len(original)
    return np.any(original.reshape(n, -1) != altered.reshape(n, -1), axis=1)


#: name -> function(phrases, previous, rng) of the robustness task, in report order.
Alteration = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
ALTERATIONS: dict[str, Alteration] = {
    "transpose_up_2": lambda ph, prev, rng: transpose(ph, 2),
    "transpose_down_3": lambda ph, prev, rng: transpose(ph, -3),
    "drop_20pct_notes": lambda ph, prev, rng: drop_notes(ph, 0.2, rng),
    "shift_eighth": lambda ph, prev, rng: time_shift(ph, EIGHTH_NOTE, prev),
    "piano_to_guitar": lambda ph, prev, rng: move_track(ph, PIANO, GUITAR),
}
#: Alterations where the any-key search (12 transpositions of the query) is also reported.
TRANSPOSITIONS: tuple[str, ...] = ("transpose_up_2", "transpose_down_3")

assert PHRASE_SHAPE[0] * PHRASE_SHAPE[1] == STEPS_PER_PHRASE
