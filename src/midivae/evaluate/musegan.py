"""MuseGAN's objective statistics of multitrack phrases (Dong et al., AAAI 2018), vectorised.

Definitions, following MuseGAN's evaluation (and pypianoroll.metrics), at 12 steps per beat:

- EB, empty-bar rate (per track): share of bars in which the track plays nothing.
- UPC, used pitch classes (per pitched track): mean number of pitch classes (0-12) in a
  bar, over the bars where the track plays.
- QN, qualified-note rate (per pitched track): share of notes at least 3 steps long (MuseGAN's
  threshold; shorter notes are fragments typical of generated rolls). A note is a run of on
  steps over the whole phrase, so it may cross bar lines.
- DP, drum-pattern rate: drum onsets on the 16th-note grid (every 3 steps) weigh 1, onsets one
  step off weigh 0.1 (MuseGAN's tolerance); the weighted count over all drum onsets.
- TD, tonal distance (Harte et al. 2006): per beat, each pitched track's chroma is normalised
  and mapped to the 6-D tonal centroid; TD is the mean Euclidean distance between the
  centroids of every pair of pitched tracks, over beats where both play.
"""

from __future__ import annotations

import numpy as np

from midivae.constants import DRUMS, N_PITCHES, N_TRACKS, PITCHED_TRACKS, STEPS_PER_BEAT, STEPS_PER_PHRASE, TRACK_NAMES

QUALIFIED_STEPS = 3
DP_GRID = 3  # a 16th note at 12 steps per beat
DP_TOLERANCE = 0.1
PITCH_CLASSES = 12


def tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    k = np.arange(PITCH_CLASSES)
    return np.stack([
        r1 * np.sin(k * 7 * np.pi / 6), r1 * np.cos(k * 7 * np.pi / 6),
        r2 * np.sin(k * 3 * np.pi / 2), r2 * np.cos(k * 3 * np.pi / 2),
        r3 * np.sin(k * 2 * np.pi / 3), r3 * np.cos(k * 2 * np.pi / 3),
    ])  # (6, 12)


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onset mask and note lengths of runs along axis 1 of a bool array ``(n, T, cols)``."""
    n, t, c = x.shape
    padded = np.zeros((n, t + 2, c), dtype=np.int8)
    padded[:, 1:-1] = x
    diff = np.diff(padded, axis=1)
    onsets = diff[:, :-1] == 1  # (n, T, c)
    # lengths: pair the k-th onset with the k-th offset in (phrase, column, time) order
    on = np.nonzero(np.moveaxis(diff == 1, 1, 2))[2]
    off = np.nonzero(np.moveaxis(diff == -1, 1, 2))[2]
    return onsets, off - on


def statistics(phrases: np.ndarray) -> dict[str, float]:
    """EB per track, UPC and QN per pitched track, DP and TD of a batch of bool phrases."""
    ph = np.asarray(phrases, dtype=bool)
    n, bars = ph.shape[0], ph.shape[1]
    out: dict[str, float] = {}
    if n == 0:
        return out
    bar_on = ph.any(axis=(2, 3))  # (n, bars, tracks)
    for t in range(N_TRACKS):
        out[f"empty_bar_rate/{TRACK_NAMES[t]}"] = float(1.0 - bar_on[:, :, t].mean())
    pc = ph.any(axis=2).reshape(n, bars, N_PITCHES // PITCH_CLASSES, PITCH_CLASSES, N_TRACKS).any(axis=2)
    time = ph.reshape(n, STEPS_PER_PHRASE, N_PITCHES, N_TRACKS)
    for t in PITCHED_TRACKS:
        used = pc[:, :, :, t].sum(axis=2)[bar_on[:, :, t]]
        out[f"used_pitch_classes/{TRACK_NAMES[t]}"] = float(used.mean()) if used.size else float("nan")
        _, lengths = _runs(time[:, :, :, t])
        out[f"qualified_note_rate/{TRACK_NAMES[t]}"] = (
            float((lengths >= QUALIFIED_STEPS).mean()) if lengths.size else float("nan")
        )
    drum_onsets, _ = _runs(time[:, :, :, DRUMS])
    per_step = drum_onsets.sum(axis=(0, 2)).astype(np.float64)  # (T,)
    weights = np.where(np.arange(STEPS_PER_PHRASE) % DP_GRID == 0, 1.0, DP_TOLERANCE)
    out["drum_pattern_rate"] = float((weights * per_step).sum() / per_step.sum()) if per_step.sum() else float("nan")
    out["tonal_distance"] = tonal_distance(ph)
    return out


def tonal_distance(phrases: np.ndarray) -> float:
    ph = np.asarray(phrases, dtype=bool)
    n = ph.shape[0]
    beats = STEPS_PER_PHRASE // STEPS_PER_BEAT
    chroma = (
        ph.reshape(n, beats, STEPS_PER_BEAT, N_PITCHES // PITCH_CLASSES, PITCH_CLASSES, N_TRACKS)
        .sum(axis=(2, 3), dtype=np.float64)
    )  # (n, beats, 12, tracks)
    total = chroma.sum(axis=2, keepdims=True)
    plays = total[:, :, 0, :] > 0  # (n, beats, tracks)
    chroma = np.divide(chroma, total, out=np.zeros_like(chroma), where=total > 0)
    centroid = np.einsum("ck,nbkt->nbct", tonal_matrix(), chroma)  # (n, beats, 6, tracks)
    dists, weights = 0.0, 0
    pitched = list(PITCHED_TRACKS)
    for i, a in enumerate(pitched):
        for b in pitched[i + 1 :]:
            both = plays[:, :, a] & plays[:, :, b]
            if both.any():
                d = np.linalg.norm(centroid[:, :, :, a] - centroid[:, :, :, b], axis=2)
                dists += float(d[both].sum())
                weights += int(both.sum())
    return dists / weights if weights else float("nan")


def note_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Cell-level precision/recall/F1 per track and over all tracks (micro-averaged)."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    out: dict[str, float] = {}
    axes = tuple(range(truth.ndim - 1))
    tp = (truth & pred).sum(axis=axes).astype(np.float64)
    fp = (~truth & pred).sum(axis=axes).astype(np.float64)
    fn = (truth & ~pred).sum(axis=axes).astype(np.float64)
    for name, a, b, c in [*zip(TRACK_NAMES, tp, fp, fn), ("all", tp.sum(), fp.sum(), fn.sum())]:
        p = a / (a + b) if a + b else float("nan")
        r = a / (a + c) if a + c else float("nan")
        f = 2 * a / (2 * a + b + c) if a + b + c else float("nan")
        out[f"precision/{name}"], out[f"recall/{name}"], out[f"f1/{name}"] = float(p), float(r), float(f)
    return out
