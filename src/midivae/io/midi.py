"""MIDI files (``.mid``, ``.midi``, ``.kar``) <-> songs, through symusic's C++ parser."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import symusic

from midivae.constants import (
    BEATS_PER_BAR,
    DEFAULT_TEMPO,
    DRUMS,
    N_TRACKS,
    PIANO,
    STEPS_PER_BEAT,
    TRACK_NAMES,
    TRACK_PROGRAMS,
    GUITAR,
    BASS,
    STRINGS,
)
from midivae.errors import InvalidInputError, UnsupportedMeterError
from midivae.io.atomic import atomic_write_bytes
from midivae.song import Notes, Song, main_tempo, notes_to_roll, phrases_to_roll, roll_to_notes

#: tick resolution of the files we write: one step = 2 ticks, so writing and reading are exact.
WRITE_TPQ = 2 * STEPS_PER_BEAT


def lpd5_family(program: int, is_drum: bool) -> int | None:
    """The LPD-5 track of a MIDI instrument, tested in LPD's order; None for dropped programs."""
    if is_drum:
        return DRUMS
    if 0 <= program <= 7:
        return PIANO
    if 24 <= program <= 31:
        return GUITAR
    if 32 <= program <= 39:
        return BASS
    if program < 96 or 104 <= program <= 111:
        return STRINGS
    return None


def load_score(path: str | os.PathLike[str]) -> symusic.Score:
    """Parse a MIDI/KAR file, turning every failure into an InvalidInputError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(path, "file not found") from None
    except OSError as exc:
        raise InvalidInputError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise InvalidInputError(path, "empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        raise InvalidInputError(path, "not a MIDI file (no MThd header)")
    try:
        # from_midi (not Score(path)): symusic picks its parser by extension and rejects .kar.
        return symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError with a parser message
        cause = str(exc).replace("MiniMidi: ", "").replace(": iostream error", "")
        raise InvalidInputError(path, f"corrupt or truncated MIDI ({cause})") from None


def score_notes(score: symusic.Score) -> Notes:
    """All notes of a score, each assigned to its LPD-5 track (dropped programs are left out)."""
    tracks, pitches, starts, ends = [], [], [], []
    for track in score.tracks:
        family = lpd5_family(int(track.program), bool(track.is_drum))
        if family is None or len(track.notes) == 0:
            continue
        arr = track.notes.numpy()
        n = arr["time"].shape[0]
        tracks.append(np.full(n, family, dtype=np.int64))
        pitches.append(arr["pitch"].astype(np.int64))
        starts.append(arr["time"].astype(np.int64))
        ends.append(arr["time"].astype(np.int64) + arr["duration"].astype(np.int64))
    if not tracks:
        empty = np.zeros(0, dtype=np.int64)
        return Notes(empty, empty, empty, empty, int(score.tpq))
    return Notes(
        np.concatenate(tracks),
        np.concatenate(pitches),
        np.concatenate(starts),
        np.concatenate(ends),
        int(score.tpq),
    )


def is_common_time(numerator: int, denominator: int) -> bool:
    """4/4, and the meters whose bars group into 4/4 bars: 2/2, 2/4, 1/4 and 1/2.

    Many files notate 4/4 music with a placeholder meter (POP909 writes 1/4 or 2/4); their bars
    group evenly into 4-beat bars, so cutting on 4/4 bar lines loses nothing.
    """
    return (numerator, denominator) in ((4, 4), (2, 2), (2, 4), (1, 4), (1, 2))


def _meter_sections(
    score: symusic.Score, n_steps: int, allow_any_meter: bool
) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    """Sections in common time as step spans, and the reasons other sections were left out."""
    tpq = int(score.tpq)
    if not len(score.time_signatures) or allow_any_meter:
        return ((0, n_steps),), ()
    sigs = score.time_signatures.numpy()
    times = sigs["time"].astype(np.int64)
    nums = sigs["numerator"].astype(np.int64)
    dens = sigs["denominator"].astype(np.int64)
    # Later events at the same tick win; music before the first event is 4/4 (the MIDI default).
    order = np.argsort(times, kind="stable")
    times, nums, dens = times[order], nums[order], dens[order]
    last = np.r_[times[1:] != times[:-1], True]
    times, nums, dens = times[last], nums[last], dens[last]
    if times[0] > 0:
        times, nums, dens = np.r_[0, times], np.r_[4, nums], np.r_[4, dens]

    sections: list[tuple[int, int]] = []
    skipped: list[str] = []
    bar = 0
    end_tick = max(int(score.end()), int(times[-1]))
    for i, (t0, num, den) in enumerate(zip(times.tolist(), nums.tolist(), dens.tolist())):
        t1 = int(times[i + 1]) if i + 1 < len(times) else end_tick
        bar_ticks = max(1, num * tpq * 4 // max(den, 1))
        n_bars = -(-(t1 - t0) // bar_ticks) if t1 > t0 else 0
        if is_common_time(num, den):
            s0 = (t0 * STEPS_PER_BEAT * 2 + tpq) // (2 * tpq)
            s1 = min(n_steps, (t1 * STEPS_PER_BEAT * 2 + tpq) // (2 * tpq))
            if s1 > s0:
                sections.append((s0, s1))
        elif t1 > t0:
            skipped.append(f"{num}/{den} section at bar {bar + 1} ({n_bars} bars)")
        bar += n_bars
    return tuple(sections), tuple(skipped)


def read_midi(path: str | os.PathLike[str], allow_any_meter: bool = False) -> Song:
    """Read a MIDI/KAR file as a song; sections not in 4/4 are left out unless allowed.

    2/2, 2/4, 1/4 and 1/2 count as 4/4 (see :func:`is_common_time`).

    Raises InvalidInputError for unreadable files and UnsupportedMeterError when no part of the
    file is in 4/4.
    """
    score = load_score(path)
    notes = score_notes(score)
    if len(notes) == 0:
        raise InvalidInputError(path, "no notes on any LPD-5 track")
    roll = notes_to_roll(notes, source=str(path))
    sections, skipped = _meter_sections(score, roll.shape[0], allow_any_meter)
    if not sections:
        raise UnsupportedMeterError(path, "no 4/4 section (" + "; ".join(skipped) + ")")
    tempo = (main_tempo(np.array([t.time for t in score.tempos]), np.array([t.qpm for t in score.tempos]), score.end())
             if len(score.tempos) else DEFAULT_TEMPO)
    return Song(roll, sections, str(path), tempo, skipped)


def roll_to_score(roll: np.ndarray, tempo: float = DEFAULT_TEMPO, velocity: int = 100) -> symusic.Score:
    """A type-1 score with one track per non-empty LPD-5 track, LPD's programs, drums on ch. 10."""
    score = symusic.Score(WRITE_TPQ)
    score.tempos.append(symusic.Tempo(0, float(tempo)))
    score.time_signatures.append(symusic.TimeSignature(0, BEATS_PER_BAR, 4))
    notes = roll_to_notes(np.asarray(roll, dtype=bool))
    scale = WRITE_TPQ // STEPS_PER_BEAT
    for t in range(N_TRACKS):
        sel = notes.track == t
        if not sel.any():
            continue
        order = np.lexsort((notes.pitch[sel], notes.start[sel]))
        start = notes.start[sel][order] * scale
        track = symusic.Track(name=TRACK_NAMES[t], program=TRACK_PROGRAMS[t], is_drum=(t == DRUMS))
        track.notes = symusic.Note.from_numpy(
            time=start.astype(np.int32),
            duration=((notes.end[sel][order] * scale) - start).astype(np.int32),
            pitch=notes.pitch[sel][order].astype(np.int8),
            velocity=np.full(start.shape[0], velocity, dtype=np.int8),
        )
        score.tracks.append(track)
    return score


def write_midi(
    path: str | os.PathLike[str], roll: np.ndarray, tempo: float = DEFAULT_TEMPO
) -> None:
    """Write a song roll ``(steps, 84, 5)`` or phrases ``(n, 4, 48, 84, 5)`` as a MIDI file."""
    roll = np.asarray(roll, dtype=bool)
    if roll.ndim != 3:
        roll = phrases_to_roll(roll)
    data = roll_to_score(roll, tempo).dumps_midi()
    atomic_write_bytes(Path(path), bytes(data))

