"""A song as one binarized multitrack pianoroll, and the note <-> pianoroll conversions.

Every reader (MIDI, LPD ``.npz``) first turns its input into *notes* ``(track, pitch, start, end)``
in its own ticks, then calls :func:`notes_to_roll`. Sharing that one step is what makes an LPD
song and its MIDI rendering give exactly the same phrases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from midivae.constants import (
    DEFAULT_TEMPO,
    LOWEST_PITCH,
    MAX_SONG_BARS,
    N_PITCHES,
    N_TRACKS,
    PHRASE_SHAPE,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    STEPS_PER_PHRASE,
)
from midivae.errors import InvalidInputError


@dataclass(frozen=True)
class Notes:
    """Notes as parallel integer arrays (structure of arrays), times in ``tpq`` ticks per beat."""

    track: np.ndarray
    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    tpq: int

    def __len__(self) -> int:
        return int(self.track.shape[0])


@dataclass(frozen=True)
class Song:
    """A binarized pianoroll ``(steps, N_PITCHES, N_TRACKS)`` at STEPS_PER_BEAT steps per beat.

    ``sections`` are the ``(start_step, end_step)`` spans in 4/4 where phrases may be cut; each
    starts on a bar line. ``skipped`` says which parts were left out, and why.
    """

    roll: np.ndarray
    sections: tuple[tuple[int, int], ...]
    source: str = ""
    tempo: float = DEFAULT_TEMPO  # BPM most of the song plays at (main_tempo)
    skipped: tuple[str, ...] = field(default=())

    @property
    def n_steps(self) -> int:
        return int(self.roll.shape[0])


@dataclass(frozen=True)
class Phrases:
    """The non-empty 4-bar phrases of a song and the bar each one starts on.

    Bar offsets count 4-beat bars (STEPS_PER_BAR steps) from the start of the song; ``tempo`` is
    the song's tempo in BPM (the one most of it plays at: :func:`main_tempo`), NaN where unknown
    (a search head may read it).
    """

    phrases: np.ndarray  # (n, *PHRASE_SHAPE) bool
    bar_offsets: np.ndarray  # (n,) int64
    tempo: float = float("nan")

    def __len__(self) -> int:
        return int(self.phrases.shape[0])


def known_tempo(bpm: np.ndarray | float) -> np.ndarray:
    """Whether each tempo (BPM) is known: NaN (or not positive) is how every layer writes "unknown"."""
    bpm = np.asarray(bpm, dtype=np.float64)
    return np.isfinite(bpm) & (bpm > 0)


def phrase_tempi(tempo: np.ndarray | float | None, n: int) -> np.ndarray:
    """``(n,)`` float64 tempi from one tempo for all ``n`` phrases, one per phrase, or None (NaN)."""
    return np.broadcast_to(np.asarray(np.nan if tempo is None else tempo, dtype=np.float64), (n,))


def main_tempo(starts: np.ndarray, bpm: np.ndarray, end: float) -> float:
    """The tempo most of a song plays at (BPM): the duration-weighted median of its tempo map.
    ``starts`` (ascending, any time unit) are where each tempo takes over; it holds until the next
    one, the last until ``end``. A placeholder tempo before the first note, or a short ritardando,
    does not decide it (the first tempo differs by > 2% from this in ~8% of the shared songs)."""
    starts = np.asarray(starts, dtype=np.float64)
    bpm = np.asarray(bpm, dtype=np.float64)
    if bpm.size == 0:
        return DEFAULT_TEMPO
    held = np.diff(np.append(np.minimum(starts, end), end)).clip(min=0)
    if held.sum() <= 0:
        return float(bpm[0])
    order = np.argsort(bpm, kind="stable")
    cum = np.cumsum(held[order])
    return float(bpm[order][np.searchsorted(cum, cum[-1] / 2)])


def _to_steps(ticks: np.ndarray, tpq: int) -> np.ndarray:
    """Ticks to steps, rounding halves up, in exact integer arithmetic."""
    return (ticks.astype(np.int64) * (2 * STEPS_PER_BEAT) + tpq) // (2 * tpq)


def notes_to_roll(notes: Notes, n_steps: int | None = None, source: str = "") -> np.ndarray:
    """Render notes to a bool roll ``(steps, N_PITCHES, N_TRACKS)``.

    Raises InvalidInputError (naming ``source``) for a song of more than ``MAX_SONG_BARS`` bars.

    Each note covers at least one step. Where a note starts while the same pitch already sounds
    on its track (back-to-back or overlapping repeats), the step before its onset is cleared, as
    LPD does, so that two consecutive notes of one pitch stay two notes. Pitches outside the
    84-pitch range are dropped.
    """
    keep = (notes.pitch >= LOWEST_PITCH) & (notes.pitch < LOWEST_PITCH + N_PITCHES)
    track = notes.track[keep].astype(np.int64)
    pitch = notes.pitch[keep].astype(np.int64) - LOWEST_PITCH
    start = _to_steps(notes.start[keep], notes.tpq)
    end = np.maximum(_to_steps(notes.end[keep], notes.tpq), start + 1)
    if n_steps is None:
        n_steps = int(end.max()) if end.size else 0
    if n_steps > MAX_SONG_BARS * STEPS_PER_BAR:
        raise InvalidInputError(source, f"{-(-n_steps // STEPS_PER_BAR):,} bars long, more than the {MAX_SONG_BARS:,} "
                                        "a song may have (a damaged time or length?)")
    end = np.minimum(end, n_steps)
    valid = start < end
    track, pitch, start, end = track[valid], pitch[valid], start[valid], end[valid]

    cells = N_PITCHES * N_TRACKS
    column = pitch * N_TRACKS + track
    roll = np.zeros(n_steps * cells, dtype=bool)
    # Paint every covered cell at once: O(active cells), not O(steps x cells).
    length = end - start
    first = np.repeat(start * cells + column, length)
    within = np.arange(first.shape[0], dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    roll[first + within * cells] = True
    roll = roll.reshape(n_steps, cells)

    # Re-attacks: clear the step before an onset that continues a sounding note of the same pitch
    # (a note that starts at step s never covers s - 1, so a set cell there is another note).
    onset = start > 0
    before, col = start[onset] - 1, column[onset]
    repeated = roll[before, col]
    roll[before[repeated], col[repeated]] = False
    return roll.reshape(n_steps, N_PITCHES, N_TRACKS)


def roll_to_notes(roll: np.ndarray) -> Notes:
    """Each run of True steps in a (pitch, track) column becomes one note (tpq = STEPS_PER_BEAT)."""
    n_steps = roll.shape[0]
    flat = roll.reshape(n_steps, -1)
    padded = np.zeros((flat.shape[1], n_steps + 2), dtype=np.int8)
    padded[:, 1:-1] = flat.T
    change = np.diff(padded, axis=1)  # (cells, n_steps + 1)
    # nonzero sorts by column then time, so the k-th onset and the k-th offset are one note.
    column, start = np.nonzero(change == 1)
    _, end = np.nonzero(change == -1)
    pitch, track = np.divmod(column, N_TRACKS)
    return Notes(
        track=track.astype(np.int64),
        pitch=pitch.astype(np.int64) + LOWEST_PITCH,
        start=start.astype(np.int64),
        end=end.astype(np.int64),
        tpq=STEPS_PER_BEAT,
    )


def cut_phrases(song: Song, keep_empty: bool = False) -> Phrases:
    """Non-overlapping 4-bar phrases on the bar lines of each 4/4 section; empty ones dropped.

    A section's last, incomplete phrase is padded with silence: a MIDI file ends at its last
    note, not on a phrase boundary, and its closing bars are music too.
    """
    chunks: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    for begin, end in song.sections:
        end = min(end, song.n_steps)
        n = -(-(end - begin) // STEPS_PER_PHRASE)
        if n <= 0:
            continue
        block = np.zeros((n * STEPS_PER_PHRASE, N_PITCHES, N_TRACKS), dtype=bool)
        block[: end - begin] = song.roll[begin:end]
        block = block.reshape(n, *PHRASE_SHAPE)
        bars = (begin + STEPS_PER_PHRASE * np.arange(n, dtype=np.int64)) // STEPS_PER_BAR
        if not keep_empty:
            nonempty = block.reshape(n, -1).any(axis=1)
            block, bars = block[nonempty], bars[nonempty]
        chunks.append(block)
        offsets.append(bars)
    if not chunks:
        return Phrases(np.zeros((0, *PHRASE_SHAPE), dtype=bool), np.zeros(0, dtype=np.int64), song.tempo)
    return Phrases(np.concatenate(chunks), np.concatenate(offsets), song.tempo)


def phrases_to_roll(phrases: np.ndarray) -> np.ndarray:
    """Concatenate phrases ``(n, *PHRASE_SHAPE)`` (or one phrase) into a song roll."""
    phrases = np.asarray(phrases, dtype=bool)
    if phrases.ndim == len(PHRASE_SHAPE):
        phrases = phrases[None]
    return phrases.reshape(-1, N_PITCHES, N_TRACKS)


def song_from_roll(roll: np.ndarray, source: str = "", tempo: float = DEFAULT_TEMPO) -> Song:
    """A song that is 4/4 throughout, starting on a bar line at step 0."""
    return Song(roll=roll, sections=((0, roll.shape[0]),), source=source, tempo=tempo)

