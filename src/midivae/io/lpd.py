"""LPD-5 pypianoroll ``.npz`` songs (24 steps per beat, 128 pitches) -> songs.

Reads the sparse CSC arrays directly (no dense 128-pitch roll, no pypianoroll import): each run
of equal non-zero velocity in a pitch column is one note, exactly as LPD's MIDI renderings spell
them, and the notes go through the same :func:`notes_to_roll` as MIDI files do.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from midivae.constants import DEFAULT_TEMPO, LPD_STEPS_PER_BEAT, N_TRACKS
from midivae.errors import InvalidInputError
from midivae.song import Notes, Song, main_tempo, notes_to_roll, song_from_roll

LPD_KEYS = tuple(f"pianoroll_{i}_csc_{k}" for i in range(N_TRACKS) for k in ("data", "indices", "indptr", "shape"))


def _track_notes(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of equal non-zero values down each CSC column -> (pitch, start, end)."""
    counts = np.diff(indptr.astype(np.int64))
    pitch = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    rows = indices.astype(np.int64)
    vals = data.astype(np.int64)
    keep = vals != 0
    pitch, rows, vals = pitch[keep], rows[keep], vals[keep]
    if rows.size == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    if np.any((np.diff(rows) <= 0) & (np.diff(pitch) == 0)):
        order = np.lexsort((rows, pitch))
        pitch, rows, vals = pitch[order], rows[order], vals[order]
    new = np.ones(rows.shape[0], dtype=bool)
    new[1:] = (pitch[1:] != pitch[:-1]) | (rows[1:] != rows[:-1] + 1) | (vals[1:] != vals[:-1])
    first = np.flatnonzero(new)
    last = np.r_[first[1:], rows.shape[0]] - 1
    return pitch[first], rows[first], rows[last] + 1


def csc_problem(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: np.ndarray) -> str | None:
    """Why one track's CSC arrays do not make a ``(steps, 128)`` pianoroll, or None: a damaged file
    must fail as bad input, not as an IndexError deep in the note reader."""
    if any(a.dtype.kind not in "biuf" for a in (data, indices, indptr, shape)):
        return "arrays that are not numbers"
    if shape.shape != (2,) or shape[1] != 128 or shape[0] < 0:
        return f"shape {shape.tolist()} is not (steps, 128)"
    if indptr.shape != (129,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        return "column pointers are not 129 ascending values from 0"
    if data.shape != indices.shape or data.ndim != 1 or indptr[-1] != data.size:
        return f"{data.size} values and {indices.size} row indices for {indptr[-1]} entries"
    if indices.size and (indices.min() < 0 or indices.max() >= shape[0]):
        return f"row indices outside 0..{shape[0] - 1}"
    return None


def lpd_notes(arrays: dict[str, np.ndarray]) -> tuple[Notes, int]:
    """Notes of the five tracks and the song length in LPD steps."""
    tracks, pitches, starts, ends = [], [], [], []
    n_steps = 0
    for i in range(N_TRACKS):
        shape = arrays[f"pianoroll_{i}_csc_shape"]
        n_steps = max(n_steps, int(shape[0]))
        p, s, e = _track_notes(
            arrays[f"pianoroll_{i}_csc_data"],
            arrays[f"pianoroll_{i}_csc_indices"],
            arrays[f"pianoroll_{i}_csc_indptr"],
        )
        tracks.append(np.full(p.shape[0], i, dtype=np.int64))
        pitches.append(p)
        starts.append(s)
        ends.append(e)
    notes = Notes(
        np.concatenate(tracks), np.concatenate(pitches), np.concatenate(starts), np.concatenate(ends),
        LPD_STEPS_PER_BEAT,
    )
    return notes, n_steps


def read_lpd(path: str | os.PathLike[str]) -> Song:
    """Read an LPD-5 ``.npz`` song; its length is kept (rounded to whole steps at 12 per beat)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in LPD_KEYS if k not in npz.files]
            if missing:
                raise InvalidInputError(path, f"not an LPD-5 pianoroll file (missing {missing[0]})")
            arrays = {k: npz[k] for k in LPD_KEYS}
            for i in range(N_TRACKS):
                problem = csc_problem(*(arrays[f"pianoroll_{i}_csc_{k}"] for k in ("data", "indices", "indptr", "shape")))
                if problem:
                    raise InvalidInputError(path, f"corrupt LPD-5 track {i}: {problem}")
            steps = npz["tempo"] if "tempo" in npz.files else np.zeros(0)  # BPM at every step
            tempo = main_tempo(np.arange(steps.size), steps, steps.size) if steps.size else DEFAULT_TEMPO
    except InvalidInputError:
        raise
    except FileNotFoundError:
        raise InvalidInputError(path, "file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise InvalidInputError(path, f"corrupt or unreadable .npz ({exc})") from None
    notes, lpd_steps = lpd_notes(arrays)
    n_steps = lpd_steps * 12 // LPD_STEPS_PER_BEAT
    roll = notes_to_roll(notes, n_steps, source=str(path))
    return song_from_roll(roll, source=str(path), tempo=tempo)

