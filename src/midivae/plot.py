"""Pictures: a multitrack pianoroll as a PNG, and training loss curves.

Plots are rendered as one composed RGB image (not one rectangle per note), so a whole song draws
in well under a second. matplotlib is imported lazily with the Agg backend: no display needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from midivae.constants import (
    LOWEST_PITCH,
    N_PITCHES,
    N_TRACKS,
    PHRASE_SHAPE,
    STEPS_PER_BAR,
    STEPS_PER_PHRASE,
    TRACK_COLORS,
    TRACK_NAMES,
)
from midivae.io.atomic import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _as_roll(roll_or_phrases: np.ndarray) -> np.ndarray:
    """A song roll ``(steps, N_PITCHES, N_TRACKS)`` of values in [0, 1] from any accepted form."""
    arr = np.asarray(roll_or_phrases)
    if arr.ndim == len(PHRASE_SHAPE):  # one phrase
        arr = arr[None]
    if arr.ndim == len(PHRASE_SHAPE) + 1:  # phrases
        arr = arr.reshape(-1, N_PITCHES, N_TRACKS)
    if arr.ndim != 3 or arr.shape[1:] != (N_PITCHES, N_TRACKS):
        raise ValueError(
            f"expected a roll (steps, {N_PITCHES}, {N_TRACKS}) or phrases (n, {', '.join(map(str, PHRASE_SHAPE))}),"
            f" got shape {arr.shape}"
        )
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def _rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    return np.array([int(color[i : i + 2], 16) / 255.0 for i in (0, 2, 4)], dtype=np.float32)


def compose_rgb(roll: np.ndarray) -> np.ndarray:
    """Alpha-blend the tracks (value = opacity) over white: ``(N_PITCHES, steps, 3)``, low pitch first."""
    steps = roll.shape[0]
    img = np.ones((N_PITCHES, steps, 3), dtype=np.float32)
    for track in range(N_TRACKS):
        alpha = roll[:, :, track].T[:, :, None]  # (pitches, steps, 1)
        img = img * (1.0 - alpha) + _rgb(TRACK_COLORS[track]) * alpha
    return img


def plot_pianoroll(
    roll_or_phrases: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Write a pianoroll PNG: time on x, pitch on y, one colour per track, bar lines.

    Accepts a song roll ``(steps, 84, 5)``, one phrase ``(4, 48, 84, 5)`` or phrases
    ``(n, 4, 48, 84, 5)``; bool or probabilities in [0, 1] (drawn as opacity, so a decoded
    reconstruction can be shown before thresholding). Thin lines mark bars, thick ones phrases.
    """
    roll = _as_roll(roll_or_phrases)
    steps = max(roll.shape[0], 1)
    plt = _pyplot()
    from matplotlib.patches import Patch

    width = float(np.clip(steps / 60.0, 6.0, 40.0))
    fig, ax = plt.subplots(figsize=(width, 4.0), dpi=100)
    try:
        ax.imshow(
            compose_rgb(roll) if roll.shape[0] else np.ones((N_PITCHES, 1, 3)),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            extent=(0, steps, LOWEST_PITCH - 0.5, LOWEST_PITCH + N_PITCHES - 0.5),
        )
        for bar_step in range(0, steps + 1, STEPS_PER_BAR):
            phrase_line = bar_step % STEPS_PER_PHRASE == 0
            ax.axvline(bar_step, color="#999999", linewidth=1.2 if phrase_line else 0.4, zorder=3)
        for octave_c in range(LOWEST_PITCH, LOWEST_PITCH + N_PITCHES, 12):
            ax.axhline(octave_c - 0.5, color="#dddddd", linewidth=0.3, zorder=2)
        ax.set_xlabel(f"time (steps, {STEPS_PER_BAR} per bar)")
        ax.set_ylabel("MIDI pitch")
        ax.set_xlim(0, steps)
        used = [t for t in range(N_TRACKS) if roll[:, :, t].any()] or list(range(N_TRACKS))
        ax.legend(
            handles=[Patch(color=TRACK_COLORS[t], label=TRACK_NAMES[t]) for t in used],
            loc="upper right",
            fontsize="small",
            framealpha=0.8,
        )
        if title:
            ax.set_title(title)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_loss_curves(
    rows: Sequence[Mapping[str, float]],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Plot training/validation curves from per-epoch metric rows (as written to metrics.jsonl).

    Left: train and validation loss and reconstruction; right: KL (and validation F1 if present).
    """
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    try:

        def series(key: str) -> list[float]:
            return [float(r.get(key, np.nan)) for r in rows]

        for key, style in (("train_loss", "-"), ("train_recon", "--"), ("val_loss", "-"), ("val_recon", "--")):
            if any(key in r for r in rows):
                left.plot(epochs, series(key), style, marker="o", markersize=3, label=key)
        left.set_xlabel("epoch")
        left.set_ylabel("nats per phrase")
        left.set_yscale("log")
        left.legend(fontsize="small")
        for key in ("train_kl", "val_kl"):
            if any(key in r for r in rows):
                right.plot(epochs, series(key), marker="o", markersize=3, label=key)
        right.set_xlabel("epoch")
        right.set_ylabel("KL (nats)")
        if any("val_f1" in r for r in rows):
            twin = right.twinx()
            twin.plot(epochs, series("val_f1"), color="black", linestyle=":", marker="s", markersize=3, label="val_f1")
            twin.set_ylabel("validation note-onset F1 (all tracks)")
            twin.set_ylim(0, 1)
            twin.legend(loc="lower right", fontsize="small")
        right.legend(loc="upper right", fontsize="small")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig, path: str | os.PathLike[str]) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
