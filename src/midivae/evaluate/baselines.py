"""Baseline embeddings (no learning, or only a PCA) and the model's own row, as Embeddings.

The raw and bag-of-bars baselines return scipy CSR matrices: the phrases are ~98% empty, so
their 80,640 (raw) or 20,160 (bag of bars) columns stay cheap. The PCA baselines are fitted by a
randomised SVD that never densifies or even centres its sparse input (the mean is folded into
the products), on training songs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from midivae.constants import BARS_PER_PHRASE, N_TRACKS, PHRASE_CELLS
from midivae.evaluate.data import SongPhrases, flatten
from midivae.evaluate.embedding import Embedding, EmbedFn
from midivae.search_space import FILE_TEMPO_WEIGHT
from midivae.verify import DEFAULT_VERIFY, PhraseNotes, VerifyConfig

PITCH_CLASSES = 12
BAR_CELLS = PHRASE_CELLS // BARS_PER_PHRASE  # 20,160
FLOAT_BYTES = 4


def _flat(phrases: np.ndarray) -> np.ndarray:
    return np.asarray(phrases, dtype=bool).reshape(len(phrases), -1)


def bool_csr(rows: np.ndarray) -> sp.csr_matrix:
    """A 2-D bool array as a float32 CSR of ones, built from its on cells (no dense float copy)."""
    r, c = np.nonzero(rows)
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=rows.shape[0]), out=indptr[1:])
    return sp.csr_matrix((np.ones(len(c), np.float32), c.astype(np.int32), indptr), shape=rows.shape)


def raw_vectors(phrases: np.ndarray) -> sp.csr_matrix:
    """The flattened binary phrase (80,640 columns) as a float32 CSR matrix."""
    return bool_csr(_flat(phrases))


def chroma_vectors(phrases: np.ndarray) -> np.ndarray:
    """Per-bar, per-track pitch-class histograms (4 x 12 x 5 = 240), each L1-normalised.

    Pitch index p is MIDI pitch p + 24, so its pitch class is p % 12; 84 pitches are 7 octaves.
    """
    ph = np.asarray(phrases, dtype=bool)
    n, bars, _, pitches, tracks = ph.shape
    counts = ph.sum(axis=2, dtype=np.float32)  # (n, bars, pitches, tracks)
    chroma = counts.reshape(n, bars, pitches // PITCH_CLASSES, PITCH_CLASSES, tracks).sum(axis=2)
    total = chroma.sum(axis=2, keepdims=True)
    chroma = np.divide(chroma, total, out=np.zeros_like(chroma), where=total > 0)
    return chroma.reshape(n, -1)


def bag_of_bars_vectors(phrases: np.ndarray) -> sp.csr_matrix:
    """Sum of the phrase's 4 per-bar unit vectors (20,160 columns): blind to which bar is first."""
    bars = np.asarray(phrases, dtype=bool).reshape(len(phrases) * BARS_PER_PHRASE, BAR_CELLS)
    m = bool_csr(bars)
    norms = np.sqrt(np.asarray(m.sum(axis=1), dtype=np.float64).ravel())  # binary: |b|^2 = nnz
    m = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ m
    fold = sp.kron(sp.eye(len(phrases), dtype=np.float32), np.ones((1, BARS_PER_PHRASE), np.float32), format="csr")
    return sp.csr_matrix(fold @ m)


def unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    sq = np.asarray(m.multiply(m).sum(axis=1), dtype=np.float64).ravel()
    scale = np.where(sq > 0, 1.0 / np.sqrt(np.maximum(sq, 1e-24)), 0.0).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ m)


@dataclass(frozen=True)
class PCA:
    """Mean and top principal axes; ``transform`` works on dense or sparse rows."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D)
    explained_variance_ratio: float

    def transform(self, x: np.ndarray | sp.spmatrix) -> np.ndarray:
        proj = x @ self.components.T
        proj = np.asarray(proj, dtype=np.float64) - (self.mean @ self.components.T)[None, :]
        return proj.astype(np.float32)


def fit_pca(
    x: np.ndarray | sp.spmatrix, k: int, n_iter: int = 3, oversample: int = 10, max_rows: int = 2000, seed: int = 0
) -> PCA:
    """PCA through the centred Gram matrix of at most ``max_rows`` rows (dual PCA).

    With far fewer rows than columns (thousands of phrases, 80,640 cells), the n x n Gram matrix
    is small: its top eigenvectors come from a randomised range finder, and the principal axes
    are ``X_c^T u / sqrt(lambda)``. Centring is folded into the products, so CSR stays sparse.
    """
    rng = np.random.default_rng(seed)
    n_all = x.shape[0]
    if n_all > max_rows:
        x = x[np.sort(rng.choice(n_all, size=max_rows, replace=False))]
    x = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    n, dims = x.shape
    k = min(k, n - 1, dims)
    mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    gram = x @ x.T
    gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram)
    r = np.asarray(x @ mean).ravel()
    gram = gram - r[:, None] - r[None, :] + float(mean @ mean)  # (X - 1m^T)(X - 1m^T)^T
    width = min(k + oversample, n)
    q, _ = np.linalg.qr(gram @ rng.standard_normal((n, width)))
    for _ in range(n_iter):
        q, _ = np.linalg.qr(gram @ q)
    evals, evecs = np.linalg.eigh(q.T @ gram @ q)
    order = np.argsort(evals)[::-1][:k]
    lam, u = np.maximum(evals[order], 1e-12), q @ evecs[:, order]
    axes = (np.asarray(x.T @ u) - mean[:, None] * u.sum(axis=0)[None, :]) / np.sqrt(lam)[None, :]
    total = float(np.trace(gram))
    return PCA(mean, axes.T.astype(np.float32), float(lam.sum() / total) if total > 0 else 0.0)


def _stack_sparse(fn, songs: Sequence[SongPhrases], batch: int = 256) -> sp.csr_matrix:
    flat = flatten(songs)
    parts = [fn(b) for b in flat.batches(None, batch)]
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 1))


# --------------------------------------------------------------------------- Embeddings


def raw(cosine: bool = False) -> Embedding:
    name = "raw_cosine" if cosine else "raw"
    return Embedding(
        name=name,
        embed=raw_vectors,
        distance="cosine" if cosine else "euclidean",
        dims=PHRASE_CELLS,
        bytes_per_phrase=PHRASE_CELLS // 8,
        notes="flattened binary pianoroll; stored bit-packed",
    )


def chroma() -> Embedding:
    dims = BARS_PER_PHRASE * PITCH_CLASSES * N_TRACKS
    return Embedding("chroma", chroma_vectors, "cosine", dims, dims * FLOAT_BYTES,
                     notes="per-bar per-track pitch-class histogram, L1-normalised, cosine")


def bag_of_bars() -> Embedding:
    return Embedding("bag_of_bars", bag_of_bars_vectors, "cosine", BAR_CELLS, BAR_CELLS * FLOAT_BYTES,
                     notes="sum of the 4 per-bar unit vectors, cosine (sparse float32 in practice)")


def pca(fit_songs: Sequence[SongPhrases], dims: int, seed: int = 0) -> Embedding:
    model = fit_pca(_stack_sparse(raw_vectors, fit_songs), dims, seed=seed)

    def embed(phrases: np.ndarray) -> np.ndarray:
        return model.transform(raw_vectors(phrases))

    k = model.components.shape[0]
    return Embedding("pca", embed, "euclidean", k, k * FLOAT_BYTES,
                     notes=f"PCA of raw pianorolls, fit on {len(fit_songs)} training songs",
                     meta={"explained_variance": model.explained_variance_ratio})


def bag_of_bars_pca(fit_songs: Sequence[SongPhrases], dims: int, seed: int = 0) -> Embedding:
    model = fit_pca(unit_rows(_stack_sparse(bag_of_bars_vectors, fit_songs)), dims, seed=seed)

    def embed(phrases: np.ndarray) -> np.ndarray:
        return model.transform(unit_rows(bag_of_bars_vectors(phrases)))

    k = model.components.shape[0]
    return Embedding("bag_of_bars_pca", embed, "cosine", k, k * FLOAT_BYTES,
                     notes=f"PCA of unit bag-of-bars vectors, fit on {len(fit_songs)} training songs",
                     meta={"explained_variance": model.explained_variance_ratio})


def random_floor(dims: int, seed: int = 0) -> Embedding:
    """Fresh Gaussian noise for every call: what chance looks like on every task."""
    rng = np.random.default_rng(seed)

    def embed(phrases: np.ndarray) -> np.ndarray:
        return rng.standard_normal((len(phrases), dims)).astype(np.float32)

    return Embedding("random", embed, "euclidean", dims, dims * FLOAT_BYTES,
                     sample=lambda ph, r: r.standard_normal((len(ph), dims)).astype(np.float32),
                     notes="independent noise per call (floor)")


class CachedEncoder:
    """Memoises the model's encodings per batch content, so several rows of one model (cosine and
    Euclidean) encode every phrase batch once."""

    def __init__(self, model) -> None:
        self.model = model
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    @staticmethod
    def _key(phrases: np.ndarray) -> bytes:
        import hashlib

        return hashlib.blake2b(np.packbits(phrases).tobytes(), digest_size=16).digest() + bytes(str(phrases.shape), "ascii")

    def _encoded(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(mu, logvar, per-bar parts or None) of a batch, from one encoder pass."""
        phrases = np.ascontiguousarray(phrases, dtype=bool)
        key = self._key(phrases)
        hit = self._cache.get(key)
        if hit is None:
            with_bars = getattr(self.model, "encode_with_bars", None)
            mu, logvar, bars = with_bars(phrases) if with_bars else (*self.model.encode(phrases), None)
            hit = (np.asarray(mu, np.float32), np.asarray(logvar, np.float32), bars)
            self._cache[key] = hit
        return hit

    def encode(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._encoded(phrases)[:2]

    def clear(self) -> None:
        """Forget every encoding (once no row of the model is left to run: ~3 KB a phrase)."""
        self._cache.clear()

    def bars(self, phrases: np.ndarray) -> np.ndarray | None:
        """Each bar's share of the content part of the posterior mean (None: no such part)."""
        return self._encoded(phrases)[2]


#: what a verified row's notes add
VERIFY_NOTE = (f"; the exact verify: the first {DEFAULT_VERIFY.candidates} candidates within {DEFAULT_VERIFY.margin} of "
               f"the best re-ordered by their notes where one holds {DEFAULT_VERIFY.min_score:.0%} of the query's (midivae.verify)")


def model_embedding(model, name: str = "model", distance: str | None = None, encoder: CachedEncoder | None = None) -> Embedding:
    """The VAE's posterior mean as the embedding; ``sample`` draws z = mu + sigma * eps.

    ``distance`` defaults to cosine, the metric ``midivae index build`` uses by default. Under
    cosine the vectors are the model's search vectors and the search is the two-stage one its
    search head sets (see :mod:`midivae.model.search_head`), as the index runs it.
    """
    dist = distance or getattr(model, "distance", None) or "cosine"
    enc = encoder or CachedEncoder(model)
    verify = DEFAULT_VERIFY if dist == "cosine" else None  # as the index verifies a cosine search
    head = getattr(model, "search_head", None) if dist == "cosine" else None
    if head is not None and not head.shortlist and not head.needs_bars:
        head = None  # the plain scan of the posterior means

    def search_vectors(z: np.ndarray, phrases: np.ndarray, tempo: np.ndarray | None) -> np.ndarray:
        if head is None:
            return z
        return head.search_vectors(z, enc.bars(phrases) if head.needs_bars else None, phrases, tempo)

    def embed(phrases: np.ndarray, tempo: np.ndarray | None = None) -> np.ndarray:
        return search_vectors(enc.encode(phrases)[0], phrases, tempo)

    def several_embed(phrases: np.ndarray, tempo: np.ndarray | None = None) -> np.ndarray:
        return head.without_song(embed(phrases, tempo))

    def sample(phrases: np.ndarray, rng: np.random.Generator, tempo: np.ndarray | None = None) -> np.ndarray:
        mu, logvar = enc.encode(phrases)
        mu, logvar = mu.astype(np.float64), logvar.astype(np.float64)
        z = (mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)).astype(np.float32)
        return search_vectors(z, phrases, tempo)

    ckpt = str(getattr(model, "checkpoint_id", ""))
    dims = int(model.latent_dim)
    if head is None:
        encode_mean = getattr(model, "encode_mean", None) or (lambda ph: model.encode(ph)[0])
        return Embedding(name, embed, dist, dims, dims * FLOAT_BYTES, sample=sample, kind="model",
                         notes=f"posterior mean, {dist} distance" + (VERIFY_NOTE if verify else "") + f"; checkpoint {ckpt}",
                         meta={"checkpoint_id": ckpt}, verify=verify,
                         timing_embed=lambda ph: _with_notes(np.asarray(encode_mean(np.asarray(ph, dtype=bool)),
                                                                        np.float32), ph, verify))
    width = int(model.search_dim)
    stored = head.coarse_dims + width if head.shortlist else width  # the index keeps the coarse part apart
    fp = head.fingerprint_hashes
    return Embedding(
        name, embed, dist, width, stored * FLOAT_BYTES,
        sample=sample, kind="model", coarse_dims=head.coarse_dims if head.shortlist else 0, shortlist=head.shortlist,
        song_dims=head.content_dims, signature_dims=fp, fp_weight=head.fingerprint_weight,
        notes=(f"search vectors ({dims}-dim posterior mean"
               + (f" + {head.song_weight} x {head.song_dims}-dim song projection"
                  + (" (reading the song's tempo)" if head.reads_tempo else "") if head.song_dims else "") + " rotated"
               + (f" + {head.bar_weight} x per-bar part" if head.bar_weight else "")
               + (f" + {fp} landmark MinHash components" if fp else "") + f", {width} dims"
               + (f"; scan of the first {head.coarse_dims} dims, top {head.shortlist} re-ranked" if head.shortlist else "")
               + (f" by distance + {head.fingerprint_weight} x (1 - landmark similarity)" if fp else "")
               + "), cosine" + VERIFY_NOTE
               + (f"; a query of several phrases: + {FILE_TEMPO_WEIGHT} x (1 - tempo agreement)" if head.reads_tempo else "")
               + f"; checkpoint {ckpt}"),
        meta={"checkpoint_id": ckpt, "search_head": head.settings()},
        several_embed=several_embed if head.song_dims else None, several_of=head.without_song if head.song_dims else None,
        reads_tempo=head.reads_tempo,
        tempo_weight=FILE_TEMPO_WEIGHT if head.reads_tempo else 0.0, verify=verify,
        timing_embed=lambda ph: _with_notes(np.asarray(model.encode_search(np.asarray(ph, dtype=bool)), np.float32), ph,
                                            verify))


def _with_notes(vectors: np.ndarray, phrases: np.ndarray, verify: VerifyConfig | None) -> np.ndarray:
    """``vectors``, once the phrases' notes are also read where the search verifies: it reads a
    query's notes beside its vector, so the cost task's encoding speed counts both."""
    if verify is not None:
        PhraseNotes.from_phrases(np.asarray(phrases, dtype=bool))
    return vectors


def model_embeddings(model, name: str = "model", encoder: CachedEncoder | None = None) -> list[Embedding]:
    """Two rows per model sharing one encoder (``encoder``: the caller's, to clear once both
    rows ran): its search (cosine, the index's default metric, through the search head) and the
    plain posterior mean under L2."""
    enc = encoder or CachedEncoder(model)
    return [model_embedding(model, name, "cosine", enc), model_embedding(model, f"{name}_l2", "euclidean", enc)]


def song_free_embed(model, batch: int = 256) -> EmbedFn:
    """The model's unit search vectors for queries of several phrases (its song part removed, no
    fingerprint columns): the space the version task scores whole files in, as plain rows for
    experiments that score files exactly (no two-stage search)."""
    emb = model_embedding(model, "model", "cosine")
    several = emb.several_embed or emb.embed

    def embed(phrases: np.ndarray) -> np.ndarray:
        out = []
        for a in range(0, len(phrases), batch):
            v = np.asarray(several(phrases[a : a + batch]), np.float32)
            v = v[:, : -emb.signature_dims] if emb.signature_dims else v
            out.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return embed


BASELINE_NAMES = ("raw", "raw_cosine", "chroma", "pca", "bag_of_bars", "bag_of_bars_pca", "random")


def make_baselines(
    fit_songs: Sequence[SongPhrases], dims: int, names: Iterable[str] = BASELINE_NAMES, seed: int = 0
) -> list[Embedding]:
    """The requested baselines, in the order asked (PCA ones need ``fit_songs``)."""
    makers = {
        "raw": lambda: raw(False),
        "raw_cosine": lambda: raw(True),
        "chroma": chroma,
        "pca": lambda: pca(fit_songs, dims, seed),
        "bag_of_bars": bag_of_bars,
        "bag_of_bars_pca": lambda: bag_of_bars_pca(fit_songs, dims, seed),
        "random": lambda: random_floor(dims, seed),
    }
    out = []
    for name in names:
        if name not in makers:
            raise ValueError(f"unknown baseline {name!r}; known: {', '.join(makers)}")
        out.append(makers[name]())
    return out
