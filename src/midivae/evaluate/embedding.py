"""The one thing every evaluation task consumes: an embedding function with its distance and cost.

Tasks accept either an :class:`Embedding` or a bare callable ``embed(phrases) -> (n, d)`` plus a
distance name; :func:`as_embedding` turns the latter into the former. An embedding that reads the
phrases' song tempo (``reads_tempo``: a model whose search head was fitted with tempi) is called
``embed(phrases, tempo)``, tempo float64 ``(n,)`` in BPM (NaN: unknown); tasks pass it through
:meth:`Embedding.vectors`, which leaves the baselines' one-argument calls as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from midivae.constants import PHRASE_SHAPE
from midivae.evaluate.metrics import Prepared, prepare
from midivae.song import phrase_tempi
from midivae.verify import VerifyConfig

EmbedFn = Callable[[np.ndarray], "np.ndarray | sp.spmatrix"]
#: ``sample(phrases, rng) -> (n, d)``: a stochastic encoding (the VAE's z = mu + sigma * eps).
SampleFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

BATCH = 256


@dataclass(frozen=True)
class Embedding:
    """An embedding of phrases ``bool (n, *PHRASE_SHAPE)`` into vectors, and what it costs.

    ``embed`` returns float32 ``(n, dims)`` (or a scipy CSR matrix for the sparse raw baselines).
    ``sample`` is the stochastic encoding used by the original protocol; deterministic
    embeddings leave it None and are encoded twice with ``embed``.
    ``bytes_per_phrase`` is what one phrase's vector costs to store in its natural form.
    """

    name: str
    embed: EmbedFn
    distance: str
    dims: int
    bytes_per_phrase: int
    sample: SampleFn | None = None
    kind: str = "baseline"  # "baseline" | "model"
    #: the embedding without any cache, for timing (rows of one model share a cached encoder)
    timing_embed: EmbedFn | None = None
    notes: str = ""
    meta: dict = field(default_factory=dict, compare=False)
    #: two-stage search: scan the first ``coarse_dims`` columns, re-rank the ``shortlist`` nearest
    #: by the whole vector (0: one exact scan of the whole vector)
    coarse_dims: int = 0
    shortlist: int = 0
    #: leading columns a song vector averages (0: all); a bar-order part means nothing for a song
    song_dims: int = 0
    #: trailing columns that are fingerprint signatures, and their weight in the shortlist's ranking
    signature_dims: int = 0
    fp_weight: float = 0.0
    #: where it differs from ``embed``: the embedding a query of several phrases (a whole file) is
    #: searched in, query and index side (a model's search vectors without their song part, see
    #: midivae.search_space)
    several_embed: EmbedFn | None = None
    #: ``several_embed`` as a function of ``embed``'s vectors, where it is one (a model: its search
    #: head's song part taken out), so a task needing both embeds each phrase once
    several_of: Callable[[np.ndarray], np.ndarray] | None = None
    #: ``embed`` (and ``sample``, ``several_embed``) take the phrases' song tempo as a second argument
    reads_tempo: bool = False
    #: a query of several phrases adds this weight x (1 - tempo agreement) to a file's distance, as
    #: the index does (midivae.search_space.tempo_term; 0: none)
    tempo_weight: float = 0.0
    #: the exact verify of each query's near-tied first candidates by their notes (midivae.verify),
    #: as the index's search runs it after this embedding's search (None: no verify)
    verify: VerifyConfig | None = None

    def vectors(self, phrases: np.ndarray, tempo: np.ndarray | None = None) -> np.ndarray | sp.spmatrix:
        """``embed(phrases)``, with the tempi where this embedding reads them."""
        return self.embed(phrases, phrase_tempi(tempo, len(phrases))) if self.reads_tempo else self.embed(phrases)

    def prepare(self, vectors: np.ndarray | sp.spmatrix) -> Prepared:
        """The vectors ready for this embedding's search (see :func:`~midivae.evaluate.metrics.prepare`)."""
        return prepare(vectors, self.distance, self.coarse_dims, self.shortlist, self.signature_dims, self.fp_weight)

    def encode_sampled(self, phrases: np.ndarray, rng: np.random.Generator, tempo: np.ndarray | None = None) -> np.ndarray:
        if self.sample is None:
            return dense(self.vectors(phrases, tempo))
        if self.reads_tempo:
            return self.sample(phrases, rng, phrase_tempi(tempo, len(phrases)))
        return self.sample(phrases, rng)


def as_embedding(embed: Embedding | EmbedFn, distance: str | None = None, name: str = "embedding") -> Embedding:
    if isinstance(embed, Embedding):
        if distance is not None and distance != embed.distance:
            return Embedding(**{**embed.__dict__, "distance": distance})
        return embed
    return Embedding(name=name, embed=embed, distance=distance or "euclidean", dims=-1, bytes_per_phrase=-1)


def dense(v: np.ndarray | sp.spmatrix) -> np.ndarray:
    return v.toarray() if sp.issparse(v) else np.asarray(v)


def embed_batches(emb: Embedding, batches: Iterable[np.ndarray | tuple[np.ndarray, np.ndarray]]) -> np.ndarray | sp.csr_matrix:
    """Embed a stream of phrase batches (or of (phrases, tempi) pairs) and stack the results
    (sparse stays sparse)."""
    parts = [emb.vectors(np.asarray(b[0], dtype=bool), b[1]) if isinstance(b, tuple) else emb.vectors(np.asarray(b, dtype=bool))
             for b in batches]
    parts = [p for p in parts if p.shape[0]]
    if not parts:
        return np.zeros((0, max(emb.dims, 0)), dtype=np.float32)
    if any(sp.issparse(p) for p in parts):
        return sp.vstack([sp.csr_matrix(p) for p in parts], format="csr")
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])


def embed_phrases(emb: Embedding, phrases: np.ndarray, tempo: np.ndarray | None = None,
                  batch: int = BATCH) -> np.ndarray | sp.csr_matrix:
    phrases = np.asarray(phrases)
    if phrases.shape[1:] != PHRASE_SHAPE:
        raise ValueError(f"phrases must have shape (n, {PHRASE_SHAPE}), got {phrases.shape}")
    tempo = phrase_tempi(tempo, len(phrases))
    return embed_batches(emb, ((phrases[i : i + batch], tempo[i : i + batch]) for i in range(0, len(phrases), batch)))
