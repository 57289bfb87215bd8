"""Task 5: a model's thresholded reconstructions and MuseGAN's statistics of real phrases,
reconstructions and prior samples."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from midivae.evaluate.data import SongPhrases, as_songs, flatten


def model_thresholds(model) -> np.ndarray:
    """Per-track decision thresholds the model learnt on validation, else 0.5 for every track."""
    from midivae.constants import N_TRACKS

    th = getattr(model, "thresholds", None)
    if th is None:
        return np.full(N_TRACKS, 0.5)
    th = np.asarray(th, dtype=np.float64).reshape(-1)
    return np.full(N_TRACKS, float(th[0])) if th.size == 1 else th


def reconstruction(
    songs: Sequence[SongPhrases],
    model,
    *,
    n_phrases: int = 1000,
    n_samples: int = 1000,
    seed: int = 0,
    batch: int = 256,
) -> dict[str, float]:
    """Thresholded reconstructions of sampled phrases (cell precision/recall/F1 per track) and
    MuseGAN's statistics of real phrases, reconstructions and prior samples.

    ``model``: an object with ``encode(phrases) -> (mu, logvar)``, ``decode(z) -> probabilities``
    and ``latent_dim`` (as returned by ``midivae.load_model``); reconstructions decode the
    posterior mean, samples decode z ~ N(0, I); both are thresholded per track.
    """
    from midivae.evaluate.musegan import note_scores, statistics

    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(n_phrases, len(flat)), replace=False))
    th = model_thresholds(model)
    real, recon = [], []
    for ph in flat.batches(rows, batch):
        mu, _ = model.encode(ph)
        probs = np.asarray(model.decode(np.asarray(mu, dtype=np.float32)))
        real.append(ph)
        recon.append(probs >= th)
    real_a, recon_a = np.concatenate(real), np.concatenate(recon)
    out: dict[str, float] = {f"recon/{k}": v for k, v in note_scores(real_a, recon_a).items()}
    samples = []
    for a in range(0, n_samples, batch):
        z = rng.standard_normal((min(batch, n_samples - a), int(model.latent_dim))).astype(np.float32)
        samples.append(np.asarray(model.decode(z)) >= th)
    for name, arr in (("real", real_a), ("reconstruction", recon_a), ("sample", np.concatenate(samples))):
        out.update({f"{name}/{k}": v for k, v in statistics(arr).items()})
    out.update(n_phrases=int(len(rows)), n_samples=int(n_samples))
    out.update({f"threshold/{i}": float(t) for i, t in enumerate(th)})
    return out
