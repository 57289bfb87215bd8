"""The search head: how a checkpoint's encodings become search vectors for a two-stage search.

The retrieval VAE's latent is a mean over a phrase's four bars, so a phrase and a bar-shifted
repeat of it (most songs are full of them) land almost on one point. A search vector therefore has
two parts: the unit posterior mean, rotated onto its principal axes (a rotation keeps every cosine,
and puts the most telling directions first), then ``bar_weight`` times each bar's deviation from
that mean (the bar order). An index scans only the first ``coarse_dims`` columns (cheap), and
re-ranks its ``shortlist`` nearest by the whole vector. Architectures without per-bar features
get the rotated mean alone. A *song projection* (optional, ``song_weight`` > 0) adds a learnt
unit vector of the phrase's song style beside the mean before the rotation (see
midivae.model.song_projection): phrases of one song agree on it even where they share no
material, so a phrase of a song's new section still finds the song. Last comes a landmark
fingerprint of the phrase's notes (``fingerprint_hashes`` MinHash components of onset pairs and,
with ``fingerprint_durations``, their note lengths; see midivae.data.fingerprint): the shortlist is
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
from midivae.search_space import without_song_part

SEARCH_FILE = "search.safetensors"
#: weight of the song projection's cosine beside the posterior mean's for one-phrase queries
#: (docs/model_selection.md, "Song projection" and "Queries of several phrases": 1 searches
#: excerpts best; queries of several phrases are scored without the song part at any weight)
SONG_WEIGHT = 1.0


@dataclass(frozen=True)
class SearchHead:
    #: ``(content, content)`` orthonormal rows, most variance first (content: the latent, plus the
    #: song projection's dims where there is one)
    basis: np.ndarray = field(repr=False)
    bar_weight: float = 0.3
    coarse_dims: int = 32
    shortlist: int = 100
    #: landmark fingerprints (midivae.data.fingerprint): MinHash components appended to the search
    #: vector (0: none); the shortlist is then re-ranked by distance + ``fingerprint_weight`` x
    #: (1 - estimated landmark Jaccard). Two-stage searches only.
    fingerprint_hashes: int = 64
    fingerprint_weight: float = 0.2
    #: landmarks hold their notes' lengths (midivae.data.fingerprint; docs/model_selection.md,
    #: "Note lengths in the landmarks"); a head file from before them has False
    fingerprint_durations: bool = True
    #: song projection (midivae.model.song_projection): ``(features, k)`` linear map of
    #: [unit mean, bar deviations, standardised style statistics], its unit output weighted by
    #: sqrt(``song_weight``) beside the unit mean (so it adds ``song_weight`` x its cosine to a dot
    #: product); None: none, and ``basis`` is ``(latent, latent)``, else ``(latent + k)`` square
    song_projection: np.ndarray | None = field(default=None, repr=False)
    style_center: np.ndarray | None = field(default=None, repr=False)
    style_scale: np.ndarray | None = field(default=None, repr=False)
    song_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.coarse_dims < self.basis.shape[0] and self.shortlist:
            raise ValueError(f"coarse_dims must be below the content size {self.basis.shape[0]}, got {self.coarse_dims}")
        if self.fingerprint_hashes and not (self.shortlist and self.coarse_dims):
            raise ValueError("fingerprints re-rank a shortlist: they need a two-stage search (coarse_dims, shortlist)")
        if self.song_projection is not None:
            from midivae.data.style import NOTE_STYLE_DIMS, STYLE_DIMS

            k = self.song_projection.shape[1]
            if self.style_center is None or self.style_scale is None or not (
                self.style_center.shape == self.style_scale.shape and self.style_center.shape[0] in (NOTE_STYLE_DIMS, STYLE_DIMS)
            ):
                raise ValueError(f"a song projection needs style_center and style_scale of {STYLE_DIMS} values "
                                 f"(or {NOTE_STYLE_DIMS}: a head without the tempo code)")
            if not 0 < k < self.basis.shape[0] or self.song_weight <= 0:
                raise ValueError(f"bad song projection: {k} dims, weight {self.song_weight}")

    @property
    def content_dims(self) -> int:
        """Leading dims of a search vector that are the rotated content (a song vector averages them)."""
        return int(self.basis.shape[0])

    @property
    def song_dims(self) -> int:
        return 0 if self.song_projection is None else int(self.song_projection.shape[1])

    @property
    def mean_axes(self) -> np.ndarray | None:
        """``(content, latent)``: the rotation's columns of the unit-mean coordinates (None without
        a song projection); see :func:`midivae.search_space.without_song_part`."""
        if self.song_projection is None:
            return None
        return np.ascontiguousarray(self.basis[:, : self.content_dims - self.song_dims])

    def without_song(self, vectors: np.ndarray) -> np.ndarray:
        """Search vectors with the song part taken out: what a query of several phrases is searched
        with (midivae.search_space)."""
        return without_song_part(vectors, self.mean_axes)

    @property
    def reads_tempo(self) -> bool:
        """Whether its song projection reads the song's tempo (a head fitted before the tempo code does not)."""
        from midivae.data.style import NOTE_STYLE_DIMS

        return self.style_center is not None and self.style_center.shape[0] > NOTE_STYLE_DIMS

    def vectors(self, mu: np.ndarray, bars: np.ndarray | None, phrases: np.ndarray | None = None,
                tempo: np.ndarray | float | None = None) -> np.ndarray:
        """Search vectors float32 ``(n, content [+ 4 * k])`` from posterior means and per-bar parts
        (and, for a song projection, the phrases themselves and their song's tempo in BPM, one per
        phrase or one for all; None or NaN: unknown)."""
        unit = unit_rows(np.asarray(mu, dtype=np.float32))
        order = None if bars is None else bar_order(bars)
        content = unit
        if self.song_projection is not None:
            if order is None or phrases is None:
                raise ValueError("a song projection needs the per-bar parts and the phrases")
            from midivae.model.song_projection import project

            song = project(self.song_projection, self.style_center, self.style_scale, unit, order, phrases,
                           tempo=tempo)
            content = np.concatenate([unit, np.sqrt(self.song_weight, dtype=np.float32) * song], axis=1)
        rotated = content @ self.basis.T
        if order is None or self.bar_weight == 0:
            return np.ascontiguousarray(rotated, dtype=np.float32)
        return np.ascontiguousarray(np.concatenate([rotated, self.bar_weight * order], axis=1), dtype=np.float32)

    @property
    def needs_bars(self) -> bool:
        """Whether its vectors read the per-bar parts (the bar part, or the song projection's input)."""
        return bool(self.bar_weight or self.song_dims)

    def search_vectors(self, mu: np.ndarray, bars: np.ndarray | None, phrases: np.ndarray,
                       tempo: np.ndarray | float | None = None) -> np.ndarray:
        """:meth:`vectors` and, where the head has fingerprints, the phrases' signature columns
        after them: the whole search vector an index stores."""
        v = self.vectors(mu, bars, phrases, tempo)
        if not self.fingerprint_hashes:
            return v
        from midivae.data.fingerprint import signatures

        sig = signatures(phrases, self.fingerprint_hashes, durations=self.fingerprint_durations)
        return np.concatenate([v, sig.astype(np.float32)], axis=1)

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray) and v is not None}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def bar_order(bars: np.ndarray) -> np.ndarray:
    """Each bar's deviation from the phrase's mean content code, relative to its size, flat ``(n, 4 * k)``."""
    bars = np.asarray(bars, dtype=np.float32)
    mean = bars.mean(axis=1, keepdims=True)
    scale = np.linalg.norm(mean, axis=2, keepdims=True) + 1e-9
    return ((bars - mean) / scale).reshape(len(bars), -1)


def fit_basis(mu: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """Principal axes of the unit posterior means (not centred: the rotation must keep cosines),
    with ``extra`` content columns (the weighted song projection) beside them."""
    unit = unit_rows(np.asarray(mu, dtype=np.float64))
    content = unit if extra is None else np.concatenate([unit, np.asarray(extra, np.float64)], axis=1)
    # only the (d, d) right factor is needed: the full left one is n x n (7.5 GB at 30,700 rows);
    # fewer rows than dims still need every axis
    _, _, vt = np.linalg.svd(content, full_matrices=content.shape[0] < content.shape[1])
    return vt.astype(np.float32)


def fit_search_head(mu: np.ndarray, song_fit: "SongFit | None" = None, **settings) -> SearchHead:
    """A search head for posterior means ``mu`` of training phrases (a few thousand suffice).
    A latent no longer than the coarse part gets a one-stage search (nothing to save by scanning less).
    ``song_fit`` (the same phrases' bar parts, style statistics and songs) adds a song projection
    fitted on them (``song_weight`` from the settings, default :data:`SONG_WEIGHT`)."""
    if len(mu) < mu.shape[1]:
        raise ValueError(f"fitting the search rotation needs at least {mu.shape[1]} phrases, got {len(mu)}")
    if settings.get("coarse_dims", SearchHead.coarse_dims) >= mu.shape[1]:
        settings = {**settings, "coarse_dims": 0, "shortlist": 0, "fingerprint_hashes": 0}
        song_fit = None
    if song_fit is None:
        return SearchHead(fit_basis(mu), **{k: v for k, v in settings.items() if k != "song_weight"})
    from midivae.model.song_projection import fit_song_projection, project

    weight = float(settings.pop("song_weight", SONG_WEIGHT))
    unit, order = unit_rows(mu), bar_order(song_fit.bars)
    altered = None
    if song_fit.altered is not None:
        a_mu, a_bars, a_style = song_fit.altered
        altered = (unit_rows(a_mu), bar_order(a_bars), a_style)
    proj = fit_song_projection(unit, order, song_fit.style, song_fit.song, altered=altered, seed=song_fit.seed)
    song = project(proj.matrix, proj.style_center, proj.style_scale, unit, order, style=song_fit.style)
    basis = fit_basis(mu, np.sqrt(weight) * song)
    return SearchHead(basis, song_projection=proj.matrix, style_center=proj.style_center,
                      style_scale=proj.style_scale, song_weight=weight, **settings)



@dataclass(frozen=True)
class SongFit:
    """What fitting a song projection needs beside the posterior means: the same phrases' per-bar
    parts ``(n, 4, k)``, their style statistics (midivae.data.style) and each one's song number."""

    bars: np.ndarray
    style: np.ndarray
    song: np.ndarray
    seed: int = 0
    #: (posterior means, bar parts, style statistics) of an altered view of every phrase, or None
    altered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def identity_head(latent_dim: int) -> SearchHead:
    """The plain search: one exact scan of the unit posterior means (no rotation, no bar part,
    no fingerprint)."""
    return SearchHead(np.eye(latent_dim, dtype=np.float32), bar_weight=0.0, coarse_dims=0, shortlist=0,
                      fingerprint_hashes=0, fingerprint_weight=0.0)


def save_search_head(head: SearchHead, folder: str | os.PathLike[str]) -> Path:
    from safetensors.numpy import save

    from midivae.io.atomic import atomic_write_bytes

    path = Path(folder) / SEARCH_FILE
    tensors = {name: np.ascontiguousarray(getattr(head, name), dtype=np.float32) for name in _ARRAYS
               if getattr(head, name) is not None}
    atomic_write_bytes(path, save(tensors, metadata={"settings": json.dumps(head.settings(), sort_keys=True)}))
    return path


_ARRAYS = ("basis", "song_projection", "style_center", "style_scale")


def load_search_head(folder: str | os.PathLike[str], latent_dim: int) -> SearchHead:
    """The checkpoint's search head, or :func:`identity_head` where it has none."""
    path = Path(folder) / SEARCH_FILE
    if not path.is_file():
        return identity_head(latent_dim)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            arrays = {name: f.get_tensor(name) for name in _ARRAYS if name in f.keys()}
            settings = json.loads((f.metadata() or {}).get("settings", "{}"))
        basis = arrays.pop("basis")
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read the search head {path}: {exc}") from None
    # a file from before fingerprints (or their note lengths) existed has none (its vectors must
    # stay what they were)
    settings = {"fingerprint_hashes": 0, "fingerprint_weight": 0.0, "fingerprint_durations": False, **settings}
    content = latent_dim + (arrays["song_projection"].shape[1] if "song_projection" in arrays else 0)
    if basis.shape != (content, content):
        raise CheckpointError(f"{path}: rotation has shape {basis.shape}, the model's latent has {latent_dim} dims"
                              + (f" and its song projection {content - latent_dim}" if content > latent_dim else ""))
    try:
        return SearchHead(basis, **arrays, **settings)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad search settings {settings} ({exc})") from None
