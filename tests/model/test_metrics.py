"""Validation metrics against brute force."""

from __future__ import annotations

import numpy as np
import torch

from midivae.constants import PHRASE_SHAPE
from midivae.model.metrics import N_BINS, ThresholdHistogram, active_units, onset_counts, onsets, prf, quantise


def test_best_threshold_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, *PHRASE_SHAPE, generator=g) < 0.05
    probs = (target.float() * 0.5 + torch.rand(3, *PHRASE_SHAPE, generator=g) * 0.6).clamp(0, 1)
    bins = quantise(probs)
    hist = ThresholdHistogram()
    hist.update(bins, target.to(torch.uint8))
    thresholds, counts = hist.best()
    for t in range(PHRASE_SHAPE[-1]):
        p, y = bins[..., t].numpy().astype(int), target[..., t].numpy()
        best = max(prf(*_counts(p >= j, y)).f1 for j in range(1, N_BINS))
        assert abs(prf(*counts[t]).f1 - best) < 1e-12
        assert prf(*_counts(p >= round(thresholds[t] * N_BINS), y)).f1 == best


def _counts(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    return int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())


def test_onsets_across_bar_lines() -> None:
    roll = torch.zeros(1, *PHRASE_SHAPE, dtype=torch.bool)
    roll[0, 0, 40:48, 10, 1] = True  # a note that crosses the first bar line ...
    roll[0, 1, 0:5, 10, 1] = True
    roll[0, 2, 3, 20, 0] = True  # ... and a one-step drum hit
    assert onsets(roll).sum() == 2 and onsets(roll)[0, 0, 40, 10, 1] and onsets(roll)[0, 2, 3, 20, 0]
    bins = quantise(roll.float())
    counts = onset_counts(bins, roll.to(torch.uint8), np.full(5, 0.5, np.float32))
    assert counts[:, 0].sum() == 2 and counts[:, 1:].sum() == 0


def test_active_units() -> None:
    mu = np.zeros((100, 4), np.float32)
    mu[:, 0] = np.linspace(-1, 1, 100)
    mu[:, 1] = np.linspace(0, 0.01, 100)
    assert active_units(mu) == 1


def test_onset_counts_match_brute_force_per_track() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(4, *PHRASE_SHAPE, generator=g) < 0.03
    probs = (target.float() * 0.4 + torch.rand(4, *PHRASE_SHAPE, generator=g) * 0.7).clamp(0, 1)
    bins, thresholds = quantise(probs), np.array([0.5, 0.6, 0.45, 0.7, 0.55], np.float32)
    got = onset_counts(bins, target.to(torch.uint8), thresholds)
    for t in range(PHRASE_SHAPE[-1]):
        pred = onsets(bins.to(torch.int16) >= round(thresholds[t] * N_BINS))[..., t].numpy()
        true = onsets(target)[..., t].numpy()
        assert tuple(got[t]) == _counts(pred, true) and min(got[t]) > 0, t
