"""The search head: how a checkpoint's encodings become search vectors for a two-stage search.

The retrieval VAE's latent is a mean over a phrase's four bars, so a phrase and a bar-shifted
repeat of it (most songs are full of them) land almost on one point. A search vector therefore has
two parts: the unit posterior mean, rotated onto its principal axes (a rotation keeps every cosine,
and puts the most telling directions first), then ``bar_weight`` times each bar's deviation from
that mean (the bar order). An index scans only the first ``coarse_dims`` columns (cheap), and
re-ranks its ``shortlist`` nearest by the whole vector. Architectures without per-bar features
get the rotated mean alone. Last comes a landmark fingerprint of the phrase's notes
(``fingerprint_hashes`` MinHash components, see midivae.data.fingerprint): the shortlist is
re-ranked by distance + ``fingerprint_weight`` x (1 - landmark similarity), so that the phrase a
query was cut from beats a near-repeat of it.

Stored beside the weights as ``search.safetensors`` (the rotation, and the settings as JSON
metadata), fitted on training phrases by :func:`fit_search_head`. The figures that chose the
settings are in docs/model_selection.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from midivae.errors import CheckpointError

SEARCH_FILE = "search.safetensors"


@dataclass(frozen=True)
class SearchHead:
    #: ``(latent, latent)`` orthonormal rows, most variance first
    basis: np.ndarray = field(repr=False)
    bar_weight: float = 0.3
    coarse_dims: int = 32
    shortlist: int = 100
    #: landmark fingerprints (midivae.data.fingerprint): MinHash components appended to the search
    #: vector (0: none); the shortlist is then re-ranked by distance + ``fingerprint_weight`` x
    #: (1 - estimated landmark Jaccard). Two-stage searches only.
    fingerprint_hashes: int = 64
    fingerprint_weight: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.coarse_dims < self.basis.shape[0] and self.shortlist:
            raise ValueError(f"coarse_dims must be below the latent size {self.basis.shape[0]}, got {self.coarse_dims}")
        if self.fingerprint_hashes and not (self.shortlist and self.coarse_dims):
            raise ValueError("fingerprints re-rank a shortlist: they need a two-stage search (coarse_dims, shortlist)")

    def vectors(self, mu: np.ndarray, bars: np.ndarray | None) -> np.ndarray:
        """Search vectors float32 ``(n, latent [+ 4 * k])`` from posterior means and per-bar parts."""
        mu = np.asarray(mu, dtype=np.float32)
        unit = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
        rotated = unit @ self.basis.T
        if bars is None or self.bar_weight == 0:
            return np.ascontiguousarray(rotated, dtype=np.float32)
        bars = np.asarray(bars, dtype=np.float32)
        mean = bars.mean(axis=1, keepdims=True)
        scale = np.linalg.norm(mean, axis=2, keepdims=True) + 1e-9
        order = ((bars - mean) / scale).reshape(len(bars), -1)
        return np.ascontiguousarray(np.concatenate([rotated, self.bar_weight * order], axis=1), dtype=np.float32)

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "basis"}


def fit_basis(mu: np.ndarray) -> np.ndarray:
    """Principal axes of the unit posterior means (not centred: the rotation must keep cosines)."""
    mu = np.asarray(mu, dtype=np.float64)
    unit = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    _, _, vt = np.linalg.svd(unit, full_matrices=True)
    return vt.astype(np.float32)


def fit_search_head(mu: np.ndarray, **settings) -> SearchHead:
    """A search head for posterior means ``mu`` of training phrases (a few thousand suffice).
    A latent no longer than the coarse part gets a one-stage search (nothing to save by scanning less)."""
    if len(mu) < mu.shape[1]:
        raise ValueError(f"fitting the search rotation needs at least {mu.shape[1]} phrases, got {len(mu)}")
    if settings.get("coarse_dims", SearchHead.coarse_dims) >= mu.shape[1]:
        settings = {**settings, "coarse_dims": 0, "shortlist": 0, "fingerprint_hashes": 0}
    return SearchHead(fit_basis(mu), **settings)


def identity_head(latent_dim: int) -> SearchHead:
    """The plain search: one exact scan of the unit posterior means (no rotation, no bar part,
    no fingerprint)."""
    return SearchHead(np.eye(latent_dim, dtype=np.float32), bar_weight=0.0, coarse_dims=0, shortlist=0,
                      fingerprint_hashes=0, fingerprint_weight=0.0)


def save_search_head(head: SearchHead, folder: str | os.PathLike[str]) -> Path:
    from safetensors.numpy import save

    from midivae.io.atomic import atomic_write_bytes

    path = Path(folder) / SEARCH_FILE
    atomic_write_bytes(path, save({"basis": np.ascontiguousarray(head.basis, dtype=np.float32)},
                                  metadata={"settings": json.dumps(head.settings(), sort_keys=True)}))
    return path


def load_search_head(folder: str | os.PathLike[str], latent_dim: int) -> SearchHead:
    """The checkpoint's search head, or :func:`identity_head` where it has none."""
    path = Path(folder) / SEARCH_FILE
    if not path.is_file():
        return identity_head(latent_dim)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            basis = f.get_tensor("basis")
            settings = json.loads((f.metadata() or {}).get("settings", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read the search head {path}: {exc}") from None
    # a file from before fingerprints existed has none (its vectors must stay what they were)
    settings = {"fingerprint_hashes": 0, "fingerprint_weight": 0.0, **settings}
    if basis.shape != (latent_dim, latent_dim):
        raise CheckpointError(f"{path}: rotation has shape {basis.shape}, the model's latent has {latent_dim} dims")
    try:
        return SearchHead(basis, **settings)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad search settings {settings} ({exc})") from None
