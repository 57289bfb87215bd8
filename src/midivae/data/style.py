"""Style statistics of a phrase: what a song keeps from one section to the next.

A phrase of new material (a bridge, an outro) shares few notes with the rest of its song, but
usually its key, its instruments and their registers, and its groove. These statistics give the
search head's song projection (midivae.model.search_head) that evidence; the VAE's latent,
trained to reconstruct, spends little of its capacity on it. All are vectorised numpy on bool
phrases ``(n, 4, 48, 84, 5)``:

* per-track pitch-class profile (12 x 5, each track's sums to 1 where it plays);
* per-track log cell count (5);
* onset positions within the bar (48) of the drums and of the pitched tracks together (2 x 48,
  each summing to 1 where there are onsets);
* per-track mean pitch and pitch spread (2 x 5), in units of the 84-pitch range and of two octaves;
* the song's tempo, where it is known (8): cos/sin(2 pi k log2 bpm) for k = 1..4. The code folds
  octaves, so a song written at double or half time keeps it; an unknown tempo is NaN, which the
  song projection reads as "no evidence" (midivae.model.song_projection). The phrase form drops
  tempo, yet phrases of one song share it and songs differ in it (two shared LPD-5 songs lie
  within 2% of each other's tempo 4% of the time): it lifted excerpt retrieval among ~1,000 songs
  from 0.914 to ~0.95 MRR (docs/model_selection.md, "The song's tempo").
"""

from __future__ import annotations

import numpy as np

from midivae.constants import DRUMS, N_PITCHES, N_TRACKS, PHRASE_CELLS, PHRASE_SHAPE, STEPS_PER_BAR
from midivae.song import known_tempo, phrase_tempi

PITCH_CLASSES = 12
#: the statistics read from the notes alone (a search head fitted before tempo reads only these)
NOTE_STYLE_DIMS = PITCH_CLASSES * N_TRACKS + N_TRACKS + 2 * STEPS_PER_BAR + 2 * N_TRACKS  # 171
TEMPO_HARMONICS = 4
TEMPO_DIMS = 2 * TEMPO_HARMONICS
STYLE_DIMS = NOTE_STYLE_DIMS + TEMPO_DIMS  # 179


def _unit_sum(x: np.ndarray, axis: int) -> np.ndarray:
    total = x.sum(axis=axis, keepdims=True)
    return np.divide(x, total, out=np.zeros_like(x), where=total > 0)


def tempo_code(bpm: np.ndarray | float | None, n: int) -> np.ndarray:
    """``(n, TEMPO_DIMS)`` octave-folded Fourier code of tempi in BPM (one per phrase, or one for
    all); NaN rows where the tempo is unknown (None, NaN, or not positive)."""
    bpm = phrase_tempi(bpm, n)
    known = known_tempo(bpm)
    x = np.log2(np.where(known, bpm, 1.0))[:, None] * np.arange(1, TEMPO_HARMONICS + 1)[None, :]
    code = np.concatenate([np.cos(2 * np.pi * x), np.sin(2 * np.pi * x)], axis=1)
    return np.where(known[:, None], code, np.nan).astype(np.float32)


def phrase_style(phrases: np.ndarray, tempo: np.ndarray | float | None = None) -> np.ndarray:
    """Style statistics float32 ``(n, STYLE_DIMS)`` of bool phrases ``(n, 4, 48, 84, 5)`` and their
    song's tempo in BPM (per phrase or one for all; None: unknown, its columns NaN).

    Works on the coordinates of the on cells (~2% of a phrase), counted with ``bincount``."""
    ph = np.asarray(phrases, dtype=bool)
    if ph.ndim != 5 or ph.shape[1:] != PHRASE_SHAPE:
        raise ValueError(f"phrases must be (n, {', '.join(map(str, PHRASE_SHAPE))}), got shape {ph.shape}")
    n = ph.shape[0]
    flat = ph.reshape(-1)
    on = np.flatnonzero(flat)
    track = on % N_TRACKS
    pitch = (on // N_TRACKS) % N_PITCHES
    step = (on // (N_TRACKS * N_PITCHES)) % STEPS_PER_BAR
    sample = on // (PHRASE_CELLS)
    cells = np.bincount((sample * N_PITCHES + pitch) * N_TRACKS + track, minlength=n * N_PITCHES * N_TRACKS)
    cells = cells.reshape(n, N_PITCHES, N_TRACKS).astype(np.float32)  # cells per pitch and track
    chroma = _unit_sum(cells.reshape(n, N_PITCHES // PITCH_CLASSES, PITCH_CLASSES, N_TRACKS).sum(axis=1), axis=1)
    total = cells.sum(axis=1)  # (n, 5)
    density = np.log1p(total)
    # onsets: on cells whose step before (in the same bar) is off
    onset = step == 0
    onset[~onset] = ~flat[on[~onset] - N_TRACKS * N_PITCHES]
    at_step = np.bincount((sample[onset] * STEPS_PER_BAR + step[onset]) * N_TRACKS + track[onset],
                          minlength=n * STEPS_PER_BAR * N_TRACKS).reshape(n, STEPS_PER_BAR, N_TRACKS).astype(np.float32)
    drums = _unit_sum(at_step[:, :, DRUMS], axis=1)
    pitched = _unit_sum(np.delete(at_step, DRUMS, axis=2).sum(axis=2), axis=1)
    pitches = np.arange(N_PITCHES, dtype=np.float32)[None, :, None]
    weight = np.maximum(total, 1.0)
    mean = (cells * pitches).sum(axis=1) / weight
    spread = np.sqrt(np.maximum((cells * pitches**2).sum(axis=1) / weight - mean**2, 0.0))
    return np.concatenate(
        [chroma.reshape(n, -1), density, drums, pitched, mean / N_PITCHES, spread / (2 * PITCH_CLASSES),
         tempo_code(tempo, n)], axis=1
    ).astype(np.float32)
