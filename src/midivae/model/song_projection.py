"""The search head's song projection: a linear map to a unit vector on which phrases of one song agree.

Excerpt retrieval misses are mostly phrases of new material (a bridge, an outro): nothing in the
first half of the song is near them note for note, so the song must be recognised by its style.
The projection maps [unit posterior mean, bar deviations, standardised style statistics
(midivae.data.style)] to ``dims`` values, trained contrastively (InfoNCE) so that two phrases of
one training song are nearer than phrases of other songs. A linear map keeps it cheap (numpy at
search time, 48k weights) and hard to over-fit to the training songs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midivae.data.style import NOTE_STYLE_DIMS, phrase_style

#: settings of the shipped fit (docs/model_selection.md, "Song projection")
SONG_DIMS = 64
STEPS = 3000
BATCH_SONGS = 256
TEMPERATURE = 0.1
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class SongProjection:
    matrix: np.ndarray  # (latent + bar part + STYLE_DIMS, dims)
    style_center: np.ndarray
    style_scale: np.ndarray


def features(unit: np.ndarray, order: np.ndarray, style: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The projection's input. Style statistics past the head's own (a head fitted before the
    tempo code reads the first 171) are left out; unknown ones (NaN: a phrase without a tempo)
    standardise to 0, the fitted mean, so they add no evidence either way."""
    standard = (np.asarray(style)[:, : len(center)] - center) / scale
    return np.concatenate([unit, order, np.nan_to_num(standard, nan=0.0)], axis=1).astype(np.float32)


def project(matrix: np.ndarray, center: np.ndarray, scale: np.ndarray, unit: np.ndarray, order: np.ndarray,
            phrases: np.ndarray | None = None, style: np.ndarray | None = None,
            tempo: np.ndarray | float | None = None) -> np.ndarray:
    """Unit song vectors float32 ``(n, dims)`` of phrases and their tempi (or of their precomputed
    style statistics)."""
    if style is None:
        style = phrase_style(phrases, tempo)
    from midivae.model.search_head import unit_rows

    return unit_rows(features(unit, order, style, center, scale) @ matrix).astype(np.float32)


def fit_song_projection(unit: np.ndarray, order: np.ndarray, style: np.ndarray, song: np.ndarray, *,
                        altered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                        dims: int = SONG_DIMS, steps: int = STEPS, batch_songs: int = BATCH_SONGS,
                        seed: int = 0) -> SongProjection:
    """Fit the projection on training phrases: ``unit`` posterior means, ``order`` bar deviations,
    ``style`` statistics and ``song`` numbers (songs with one phrase give no pair and are left out).
    ``altered``: the same three of an altered view of every phrase (midivae.data.augment); each
    pair's second phrase is then that view half of the time, so the projection learns to ignore
    what the views change."""
    import torch

    song = np.asarray(song)
    if not np.isfinite(style[:, NOTE_STYLE_DIMS:]).any():
        # no fitting phrase has a tempo (a phrase file): fit on the notes' statistics alone, so the
        # head does not read tempi (weights it never learnt would turn a query's tempo into noise)
        style = style[:, :NOTE_STYLE_DIMS]
        altered = None if altered is None else (*altered[:2], altered[2][:, :NOTE_STYLE_DIMS])
    center = np.nanmean(style, axis=0).astype(np.float32)
    scale = (np.nanstd(style, axis=0) + 1e-6).astype(np.float32)
    x = torch.from_numpy(features(unit, order, style, center, scale))
    x_alt = None if altered is None else torch.from_numpy(features(*altered, center, scale))
    _, inverse, counts = np.unique(song, return_inverse=True, return_counts=True)
    by_song = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    paired = np.nonzero(counts >= 2)[0]
    if len(paired) < 2:
        raise ValueError("fitting a song projection needs at least two songs with two phrases each")
    b = min(batch_songs, len(paired))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    linear = torch.nn.Linear(x.shape[1], dims, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) / np.sqrt(x.shape[1]))
    opt = torch.optim.AdamW(linear.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    labels = torch.arange(b)
    for _ in range(steps):
        songs = rng.choice(paired, size=b, replace=False)
        # two distinct phrases of each song: a random one and a random other one
        first = rng.integers(0, counts[songs])
        second = (first + rng.integers(1, counts[songs])) % counts[songs]
        a = by_song[starts[songs] + first]
        p = by_song[starts[songs] + second]
        za = torch.nn.functional.normalize(linear(x[a]), dim=1)
        xp = x[p]
        if x_alt is not None:
            use = torch.from_numpy(rng.random(b) < 0.5)
            xp = torch.where(use[:, None], x_alt[p], xp)
        zp = torch.nn.functional.normalize(linear(xp), dim=1)
        logits = za @ zp.T / TEMPERATURE
        loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return SongProjection(linear.weight.detach().numpy().T.copy(), center, scale)
