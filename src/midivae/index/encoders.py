"""Which encoder turns phrases into vectors: the trained model, or a built-in stand-in.

``resolve_encoder(None)`` loads the shipped model through ``midivae.model.api.load_model``;
a path loads that checkpoint. ``builtin:bar-profile[:DIM]`` is a deterministic, no-learning
encoder (per-track pitch and rhythm profiles pooled over the 4 bars, then a fixed random
projection): tests and benchmarks use it where no trained model exists, and it is an honest
floor for what the learnt model must beat.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from midivae.constants import N_PITCHES, N_TRACKS, PHRASE_SHAPE, STEPS_PER_BAR
from midivae.errors import CheckpointError, InvalidInputError, VectorIndexError
from midivae.index.base import Encoder
from midivae.song import phrase_tempi
from midivae.search_space import decode_axes, encode_axes, without_song_part

BUILTIN_PREFIX = "builtin:"
BAR_PROFILE = "builtin:bar-profile"
_FEATURES = N_PITCHES * N_TRACKS + STEPS_PER_BAR * N_TRACKS


class BarProfileEncoder:
    """Order-free bar profile -> fixed Gaussian projection. Deterministic given (dim, seed)."""

    def __init__(self, latent_dim: int = 64, seed: int = 0) -> None:
        self.latent_dim = int(latent_dim)
        self.seed = int(seed)
        self.checkpoint_id = f"{BAR_PROFILE}/d{self.latent_dim}/s{self.seed}"
        rng = np.random.default_rng(seed)
        self._proj = (rng.standard_normal((_FEATURES, self.latent_dim)) / np.sqrt(_FEATURES)).astype(np.float32)

    def features(self, phrases: np.ndarray) -> np.ndarray:
        phrases = check_phrases(phrases)
        n = phrases.shape[0]
        pitch = phrases.sum(axis=(1, 2), dtype=np.uint16).reshape(n, -1)  # (n, 84*5) over bars, steps
        rhythm = phrases.any(axis=3).sum(axis=1, dtype=np.uint16).reshape(n, -1)  # (n, 48*5) over bars
        feats = np.concatenate([pitch, rhythm], axis=1).astype(np.float32)
        return np.log1p(feats)

    def encode(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = self.features(phrases) @ self._proj
        return mu.astype(np.float32), np.zeros_like(mu)


def check_phrases(phrases: np.ndarray) -> np.ndarray:
    phrases = np.asarray(phrases)
    if phrases.ndim != len(PHRASE_SHAPE) + 1 or phrases.shape[1:] != PHRASE_SHAPE:
        raise InvalidInputError("<phrases>", f"expected shape (n, {', '.join(map(str, PHRASE_SHAPE))}), "
                                f"got {phrases.shape}")
    return phrases.astype(bool, copy=False)


def resolve_encoder(checkpoint: str | None = None) -> Encoder:
    """The encoder named by ``checkpoint`` (None: the shipped model)."""
    if checkpoint and checkpoint.startswith(BAR_PROFILE):
        parts = checkpoint[len(BAR_PROFILE):].strip(":/").split(":") if checkpoint != BAR_PROFILE else []
        try:
            dim = int(parts[0].lstrip("d")) if parts and parts[0] else 64
        except ValueError:
            raise CheckpointError(f"{checkpoint}: expected {BAR_PROFILE}[:DIM]") from None
        return BarProfileEncoder(dim)
    if checkpoint and checkpoint.startswith(BUILTIN_PREFIX):
        raise CheckpointError(f"{checkpoint}: unknown built-in encoder (known: {BAR_PROFILE}[:DIM])")
    try:
        api = importlib.import_module("midivae.model.api")
    except ModuleNotFoundError as exc:
        if exc.name not in ("midivae.model.api", "midivae.model"):
            raise
        raise CheckpointError(
            f"no trained model available (midivae.model.api is missing); pass --checkpoint {BAR_PROFILE} "
            "to use the built-in no-learning encoder") from None
    return api.load_model(checkpoint)


@dataclass(frozen=True)
class SearchLayout:
    """How an encoder's search vectors are stored and searched (see midivae.model.search_head).

    ``width``: dims of a search vector; ``coarse_dims`` > 0: the phrase index scans only that many
    leading dims and candidate songs are scored on the whole vectors (two-stage); ``song_dims``:
    the leading dims a song vector averages; ``search_id``: identifies the search head, so an
    index refuses vectors made by another one; ``signature_dims``: trailing fingerprint columns.
    """

    width: int
    coarse_dims: int = 0
    shortlist: int = 0
    song_dims: int = 0
    search_id: str = ""
    #: trailing columns that are fingerprint signatures, and their weight in the shortlist's ranking
    signature_dims: int = 0
    fp_weight: float = 0.0
    #: the model's latent size (shown by ``index info``; 0: ``song_dims``)
    latent_dim: int = 0
    #: ``(song_dims, latent_dim)`` where the content block holds a song part: what takes it out of
    #: a query of several phrases (midivae.search_space); None: no song part
    mean_axes: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: weight of the tempo term in a query of several phrases (midivae.search_space.tempo_term;
    #: 0: none, an encoder whose search head does not read tempo, or an index from before it)
    tempo_weight: float = 0.0

    def query_vectors(self, vectors: np.ndarray, n_phrases: int) -> np.ndarray:
        """The vectors a query of ``n_phrases`` phrases is searched with: a query of several
        phrases without the song part (midivae.search_space), a one-phrase query as it is."""
        return without_song_part(vectors, self.mean_axes) if n_phrases > 1 else vectors

    def to_meta(self) -> dict[str, str]:
        """The layout as an index catalogue's meta entries (:meth:`from_meta` reads them back)."""
        song_dims = self.song_dims or self.width
        return {"latent_dim": str(self.width), "coarse_dims": str(self.coarse_dims), "shortlist": str(self.shortlist),
                "song_dims": str(song_dims), "search_id": self.search_id,
                "model_latent_dim": str(self.latent_dim or song_dims),
                "signature_dims": str(self.signature_dims), "fp_weight": repr(self.fp_weight),
                "tempo_weight": repr(self.tempo_weight),
                **({"mean_axes": encode_axes(self.mean_axes)} if self.mean_axes is not None else {})}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> "SearchLayout":
        """The layout an index was built with (an index from before search heads: the plain one)."""
        width = int(meta["latent_dim"])
        song_dims = int(meta.get("song_dims", width))
        latent = int(meta.get("model_latent_dim", song_dims))
        try:
            axes = decode_axes(meta["mean_axes"], song_dims, latent) if meta.get("mean_axes") else None
        except ValueError as exc:  # binascii.Error is one
            raise VectorIndexError(f"the index's catalogue holds bad mean axes ({exc}); rebuild it") from None
        return cls(width, int(meta.get("coarse_dims", 0)), int(meta.get("shortlist", 0)), song_dims,
                   meta.get("search_id", ""), int(meta.get("signature_dims", 0)), float(meta.get("fp_weight", 0.0)),
                   latent, axes, float(meta.get("tempo_weight", 0.0)))


def reads_tempo(encoder: Encoder) -> bool:
    """Whether the encoder's search vectors read the phrases' song tempo (a model whose search head
    was fitted with tempi; midivae.data.style)."""
    return bool(getattr(getattr(encoder, "search_head", None), "reads_tempo", False))


def search_layout(encoder: Encoder) -> SearchLayout:
    head = getattr(encoder, "search_head", None)
    if head is None or (not head.bar_weight and not head.shortlist and not getattr(encoder, "search_id", "")):
        return SearchLayout(encoder.latent_dim, song_dims=encoder.latent_dim)
    from midivae.search_space import FILE_TEMPO_WEIGHT

    return SearchLayout(int(encoder.search_dim), head.coarse_dims if head.shortlist else 0, int(head.shortlist),
                        head.content_dims, str(getattr(encoder, "search_id", "")), int(head.fingerprint_hashes),
                        float(head.fingerprint_weight), int(encoder.latent_dim), head.mean_axes,
                        FILE_TEMPO_WEIGHT if reads_tempo(encoder) else 0.0)


def _encode_batched(encoder: Encoder, phrases: np.ndarray, encode, width: int, batch: int, what: str,
                    tempo: np.ndarray | float | None = None) -> np.ndarray:
    """``encode`` applied ``batch`` phrases at a time into one float32 ``(n, width)`` array, each
    batch checked for its shape and for NaN (a bad checkpoint must not reach an index); with
    ``tempo`` (BPM per phrase, or one for all), ``encode(phrases, tempo)``."""
    phrases = check_phrases(phrases)
    bpm = None if tempo is None else phrase_tempi(tempo, phrases.shape[0])
    out = np.empty((phrases.shape[0], width), dtype=np.float32)
    for start in range(0, phrases.shape[0], batch):
        chunk = phrases[start : start + batch]
        v = np.asarray(encode(chunk) if bpm is None else encode(chunk, bpm[start : start + batch]), dtype=np.float32)
        if v.shape != (min(batch, phrases.shape[0] - start), width) or not np.isfinite(v).all():
            raise CheckpointError(f"encoder {encoder.checkpoint_id!r} returned bad {what} {v.shape}")
        out[start : start + batch] = v
    return out


def encode_search(encoder: Encoder, phrases: np.ndarray, batch: int = 256,
                  tempo: np.ndarray | float | None = None) -> np.ndarray:
    """Search vectors ``(n, width)`` float32 (the posterior means where the encoder has no search
    head), encoded in batches to bound memory; ``tempo``: the phrases' song tempo in BPM (NaN:
    unknown), for a model whose search head reads it."""
    encode = getattr(encoder, "encode_search", None)
    if encode is None:
        return _encode_batched(encoder, phrases, lambda p: encoder.encode(p)[0], search_layout(encoder).width, batch,
                               "vectors")
    return _encode_batched(encoder, phrases, encode, search_layout(encoder).width, batch, "vectors",
                           tempo if reads_tempo(encoder) else None)


def encode_means(encoder: Encoder, phrases: np.ndarray, batch: int = 256) -> np.ndarray:
    """Posterior means ``(n, latent_dim)`` float32, encoded in batches to bound memory."""
    return _encode_batched(encoder, phrases, lambda p: encoder.encode(p)[0], encoder.latent_dim, batch, "means")
