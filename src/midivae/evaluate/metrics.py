"""Ranking metrics that count ties in expectation, and the distance arithmetic behind them.

Every metric here is the expectation over a uniformly random ordering of tied candidates. A
degenerate embedding (constant vectors, all distances equal) therefore scores chance, never 1:
a tie with the right answer is worth 1/(#tied) of a hit, not a whole one.

Distances are computed as *ranking* distances: squared Euclidean (same order as Euclidean) or
``1 - cosine``. Vectors may be dense numpy arrays or scipy CSR matrices (the raw-pianoroll
baselines are 98% empty and 80,640 wide; densifying them would cost gigabytes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from midivae.data.fingerprint import similarity

DISTANCES = ("euclidean", "cosine")
#: Two distances closer than this (relative to the query's distance scale) count as a tie.
TIE_RTOL = 1e-5
_EULER = 0.5772156649015329


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n for integer arrays (H(0) = 0)."""
    n = np.asarray(n, dtype=np.float64)
    return np.where(n > 0, digamma(n + 1.0) + _EULER, 0.0)


@dataclass(frozen=True)
class Prepared:
    """Vectors ready for distance computation (normalised for cosine) and their squared norms.

    ``coarse`` (two-stage search): the vectors' first columns prepared on their own. A query then
    ranks the ``shortlist`` nearest candidates by the coarse distance first, in the order of the
    whole vectors, then the rest in coarse order, as a search that scans a short vector and re-ranks
    its shortlist with a longer one returns them.
    """

    vectors: np.ndarray | sp.csr_matrix
    sq_norms: np.ndarray
    distance: str
    coarse: "Prepared | None" = None
    shortlist: int = 0
    #: landmark fingerprints (midivae.data.fingerprint), two-stage only: the shortlist is ranked by
    #: whole-vector distance + ``fp_weight`` x (1 - landmark similarity)
    signatures: np.ndarray | None = None
    fp_weight: float = 0.0

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @cached_property
    def transposed(self) -> sp.csr_matrix:
        """The sparse vectors' transpose in CSR, built once: a sparse product converts its right
        side to CSR, which at ~70,000 rows took a tenth of each query chunk's product."""
        return sp.csr_matrix(sp.csr_matrix(self.vectors).T)


def prepare(vectors: np.ndarray | sp.spmatrix, distance: str, coarse_dims: int = 0, shortlist: int = 0,
            signature_dims: int = 0, fp_weight: float = 0.0) -> Prepared:
    """Cast to float32 (dense) or CSR, L2-normalise for cosine, precompute squared norms.

    ``coarse_dims`` > 0 with ``shortlist`` > 0 prepares a two-stage search; ``signature_dims`` > 0:
    the last columns are fingerprint signatures, not coordinates (see :class:`Prepared`).
    """
    if signature_dims:
        if not (coarse_dims and shortlist):
            raise ValueError("fingerprints re-rank a shortlist: they need a two-stage search")
        v = np.asarray(vectors)
        rest = prepare(v[:, :-signature_dims], distance, coarse_dims, shortlist)
        return replace(rest, signatures=v[:, -signature_dims:].astype(np.int32), fp_weight=float(fp_weight))
    if coarse_dims and shortlist:
        if sp.issparse(vectors):
            raise ValueError("two-stage search needs dense vectors")
        whole = prepare(vectors, distance)
        coarse = prepare(np.asarray(vectors)[:, :coarse_dims], distance)
        return Prepared(whole.vectors, whole.sq_norms, distance, coarse, int(shortlist))
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if sp.issparse(vectors):
        v = sp.csr_matrix(vectors, dtype=np.float32)
        sq = np.asarray(v.multiply(v).sum(axis=1), dtype=np.float64).ravel()
        if distance == "cosine":
            scale = (1.0 / np.sqrt(np.maximum(sq, 1e-24))).astype(np.float32)
            # only the values are new: the unit rows share the input's column indices and row
            # pointers (a raw phrase's ~1,000 cells, 4 bytes of index each, are not copied)
            v = sp.csr_matrix((v.data * np.repeat(scale, np.diff(v.indptr)), v.indices, v.indptr), shape=v.shape)
            sq = np.where(sq > 0, 1.0, 0.0)
    else:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (n, d), got shape {v.shape}")
        sq = np.einsum("ij,ij->i", v, v, dtype=np.float64)
        if distance == "cosine":
            v = v / np.sqrt(np.maximum(sq, 1e-24))[:, None].astype(np.float32)
            sq = np.where(sq > 0, 1.0, 0.0)
    return Prepared(v, sq, distance)


def take(p: Prepared, rows: np.ndarray) -> Prepared:
    """A subset of prepared vectors (rows in the given order)."""
    rows = np.asarray(rows, dtype=np.int64)
    coarse = take(p.coarse, rows) if p.coarse is not None else None
    signatures = p.signatures[rows] if p.signatures is not None else None
    return Prepared(p.vectors[rows], p.sq_norms[rows], p.distance, coarse, p.shortlist, signatures, p.fp_weight)


def pairwise(q: Prepared, x: Prepared) -> np.ndarray:
    """Ranking distances ``(len(q), len(x))`` float64: squared Euclidean or 1 - cosine.

    For a two-stage index (``x.coarse``) they are the order its search returns: each query's
    ``shortlist`` nearest rows by the coarse distance keep their whole-vector distances; the other
    rows come after all of those, in coarse order (shifted past the largest possible whole-vector
    distance, so ranks and song minima over the returned rows stay meaningful).
    """
    stages = two_stage(q, x)
    if stages is None:
        return _pairwise(q, x)
    fine, rough, kept = stages
    return np.where(kept, fine, rough + past_fine(x, fine))


def is_two_stage(q: Prepared, x: Prepared) -> bool:
    """Whether searching ``x`` for ``q`` runs in two stages (with a shortlist as long as the index,
    every row is short-listed: the ranking is the whole vectors' one, fingerprints included)."""
    return x.coarse is not None and q.coarse is not None


def two_stage(q: Prepared, x: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Whole-vector distances (plus the fingerprint term, where ``x`` has fingerprints: see
    :class:`Prepared`), coarse distances and each query's coarse shortlist (bool), for a two-stage
    index; None for a plain one."""
    if not is_two_stage(q, x):
        return None
    rough = _pairwise(q.coarse, x.coarse)
    listed = None
    if x.shortlist < len(x):
        listed = np.argpartition(rough, x.shortlist - 1, axis=1)[:, : x.shortlist]
        kept = np.zeros(rough.shape, dtype=bool)
        np.put_along_axis(kept, listed, True, axis=1)
    else:
        kept = np.ones(rough.shape, dtype=bool)
    fine = _pairwise(q, x)
    if x.signatures is not None and q.signatures is not None:
        # distance + weight x (1 - landmark similarity): outside the shortlist the similarity
        # counts as 0 (plus the whole weight); only the shortlist's pairs are compared
        if listed is None:
            rows, cols = np.nonzero(kept)
        else:
            rows, cols = np.repeat(np.arange(len(q)), x.shortlist), listed.ravel()
        listed_fine = fine[rows, cols]
        fine += x.fp_weight
        fine[rows, cols] = listed_fine + x.fp_weight * (1.0 - similarity(q.signatures[rows], x.signatures[cols]))
    return fine, rough, kept


def past_fine(x: Prepared, fine: np.ndarray) -> float | np.ndarray:
    """An offset that puts coarse distances after every whole-vector distance: 1 - cosine never
    exceeds 2 (plus the fingerprint weight), so one offset serves every query (the version task
    averages over queries)."""
    if x.distance == "cosine":
        return 2.0 + x.fp_weight + 1e-3
    return fine.max(axis=1, keepdims=True) + 1.0


def _pairwise(q: Prepared, x: Prepared) -> np.ndarray:
    if q.distance != x.distance:
        raise ValueError("query and index were prepared for different distances")
    qv, xv = q.vectors, x.vectors
    if sp.issparse(qv) or sp.issparse(xv):
        qv = qv if sp.issparse(qv) else sp.csr_matrix(qv)
        dot = (qv @ x.transposed).toarray()
    else:
        dot = qv @ xv.T
    if q.distance == "cosine":
        return np.subtract(1.0, dot, dtype=np.float64)  # float64 in one pass, no copy of ``dot`` first
    d = q.sq_norms[:, None] + x.sq_norms[None, :] - 2.0 * dot.astype(np.float64)
    return np.maximum(d, 0.0)


def tie_tolerance(q: Prepared, x: Prepared) -> np.ndarray:
    """Per-query absolute tie tolerance: float32 rounding of the dot products is relative to
    the norms involved, so two copies of one vector may differ in their last bits."""
    if q.distance == "cosine":
        return np.full(len(q), TIE_RTOL)
    xmax = float(x.sq_norms.max()) if len(x) else 0.0
    return TIE_RTOL * (q.sq_norms + xmax + 1e-12)


def group_min(d: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Minimum over contiguous column groups: ``d[:, starts[i]:starts[i+1]].min(1)``."""
    return np.minimum.reduceat(d, starts, axis=1)


def group_mean(d: np.ndarray, starts: np.ndarray) -> np.ndarray:
    counts = np.diff(np.append(starts, d.shape[1]))
    return np.add.reduceat(d, starts, axis=1) / counts


@dataclass(frozen=True)
class RankStats:
    """Per query: #candidates strictly closer than the target, #others tied with it."""

    closer: np.ndarray
    tied: np.ndarray

    def hit(self, k: int) -> np.ndarray:
        """P(rank <= k) under random tie-breaking, per query."""
        return np.clip((k - self.closer) / (self.tied + 1.0), 0.0, 1.0)

    def reciprocal_rank(self) -> np.ndarray:
        """E[1/rank]: the rank is uniform on closer+1 .. closer+tied+1."""
        s, e = self.closer.astype(np.float64), self.tied.astype(np.float64)
        return (_harmonic(s + e + 1) - _harmonic(s)) / (e + 1.0)

    def expected_rank(self) -> np.ndarray:
        return self.closer + (self.tied + 2.0) / 2.0


def rank_of_target(d: np.ndarray, target: np.ndarray, tol: np.ndarray | float = 0.0) -> RankStats:
    """Rank statistics of one target column per row of a distance matrix.

    Candidates at ``+inf`` (excluded ones, e.g. the query itself) never tie with the target.
    """
    d = np.asarray(d, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    rows = np.arange(d.shape[0])
    dt = d[rows, target][:, None]
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), (d.shape[0],))[:, None]
    closer = np.count_nonzero(d < dt - tol, axis=1)
    tied = np.count_nonzero(np.abs(d - dt) <= tol, axis=1) - 1
    return RankStats(closer.astype(np.int64), np.maximum(tied, 0).astype(np.int64))


def first_relevant_metrics(
    d: np.ndarray, relevant: np.ndarray, ks: Sequence[int], tol: np.ndarray | float = 0.0
) -> dict[str, np.ndarray]:
    """Hit@k and reciprocal rank of the *first* relevant candidate, per query, ties in expectation.

    ``relevant`` is a bool mask like ``d``. With s irrelevant candidates strictly closer than the
    best relevant one, e irrelevant and c relevant ones tied at that distance, the number X of
    tied irrelevant candidates ranked before the first relevant one has
    ``P(X >= j) = prod_{i<j} (e - i) / (e + c - i)``.
    """
    d = np.asarray(d, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    n = d.shape[0]
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), (n,))
    hits = {k: np.zeros(n) for k in ks}
    rr = np.zeros(n)
    for i in range(n):
        rel = relevant[i]
        if not rel.any():
            raise ValueError(f"query {i} has no relevant candidate")
        row = d[i]
        best = row[rel].min()
        near = np.abs(row - best) <= tol[i]
        s = int(np.count_nonzero((row < best - tol[i]) & ~rel))
        e = int(np.count_nonzero(near & ~rel))
        c = int(np.count_nonzero(near & rel))
        j = np.arange(e + 1, dtype=np.float64)
        # P(X >= j) for j = 0..e, then P(X = j).
        ratios = (e - j[:-1]) / (e + c - j[:-1])
        ge = np.concatenate([[1.0], np.cumprod(ratios)])
        px = ge - np.append(ge[1:], 0.0)
        rr[i] = float(np.sum(px / (s + 1.0 + j)))
        for k in ks:
            hits[k][i] = float(px[: max(0, k - s)].sum())
    out = {f"hit@{k}": hits[k] for k in ks}
    out["rr"] = rr
    return out


def precision_at_k(d: np.ndarray, same: np.ndarray, k: int, tol: np.ndarray | float = 0.0,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Expected fraction of same-label items among the k nearest (excluded items at +inf);
    ``weights``: :func:`knn_weights` of ``d`` where the caller has them already."""
    weights = knn_weights(d, k, tol) if weights is None else weights
    return (weights * same).sum(axis=1) / k


def knn_weights(d: np.ndarray, k: int, tol: np.ndarray | float = 0.0) -> np.ndarray:
    """Expected membership of each candidate in the k nearest under random tie-breaking.

    Candidates strictly inside the k-th distance weigh 1; the group tied at the k-th distance
    shares the remaining slots equally. ``tol``: per row (or one for all), distances this close count as tied.
    """
    d = np.asarray(d, dtype=np.float64)
    n, m = d.shape
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), (n,))
    k = min(k, int(np.isfinite(d).sum(axis=1).min()))
    kth = np.partition(d, k - 1, axis=1)[:, k - 1][:, None]
    t = tol[:, None]
    inside = d < kth - t
    boundary = np.abs(d - kth) <= t
    slots = k - inside.sum(axis=1, keepdims=True)
    share = slots / np.maximum(boundary.sum(axis=1, keepdims=True), 1)
    return inside.astype(np.float64) + boundary * share


def knn_vote(d: np.ndarray, labels: np.ndarray, n_classes: int, k: int, tol: np.ndarray | float = 0.0,
             weights: np.ndarray | None = None) -> np.ndarray:
    """Expected-vote k-NN: per query, the probability of predicting each class.

    Votes are the expected neighbour memberships (:func:`knn_weights`, or ``weights``); classes
    tied at the top vote share the prediction equally (random tie-breaking of the vote).
    """
    weights = knn_weights(d, k, tol) if weights is None else weights
    return vote_shares(weights @ np.eye(n_classes)[labels])


def vote_shares(votes: np.ndarray) -> np.ndarray:
    """Per query, the probability of predicting each class from its votes (top classes tied share)."""
    top = votes >= votes.max(axis=1, keepdims=True) - 1e-9
    return top / top.sum(axis=1, keepdims=True)


def shuffled_label_band(d: np.ndarray, labels: np.ndarray, n_classes: int, k: int, tol: np.ndarray | float = 0.0,
                        n_shuffles: int = 200, quantile: float = 0.95, seed: int = 0,
                        weights: np.ndarray | None = None) -> dict[str, float]:
    """The ``quantile`` of balanced k-NN accuracy and of precision@k over ``n_shuffles`` random
    reassignments of the labels to the same songs (``d``'s neighbourhoods kept): how high a figure
    an embedding reaches by chance on this many songs of these classes. A figure below its band
    does not show that the embedding groups the labels at all."""
    n = d.shape[0]
    # about k neighbours per row: a sparse product per shuffle (excluded songs, the query, weigh 0)
    w = sp.csr_matrix(knn_weights(d, k, tol) if weights is None else weights)
    eye, rows, rng = np.eye(n_classes), np.arange(n), np.random.default_rng(seed)
    balanced, precision = [], []
    for _ in range(n_shuffles):
        y = rng.permutation(labels)
        votes = np.asarray(w @ eye[y])
        balanced.append(balanced_accuracy(vote_shares(votes), y))
        precision.append(float(votes[rows, y].mean() / k))
    return {"balanced": float(np.quantile(balanced, quantile)), f"precision@{k}": float(np.quantile(precision, quantile))}


def same_label_auc(d: np.ndarray, labels: np.ndarray, n_shuffles: int = 200, quantile: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """How much nearer same-label items rank than the rest, over each item's whole ranking: per
    item the ROC AUC of its same-label items against the others (0.5: no grouping; exact ties
    share the rank), averaged per label, then over labels (every label weighs the same, as in the
    balanced accuracy). Unlike a 10-NN vote it uses every pair, so it still shows a grouping on a
    few hundred songs of small classes. ``auc``, and ``shuffled95``: its ``quantile`` over
    ``n_shuffles`` reassignments of the labels to the same items. The diagonal is excluded
    (``d[i, i]`` must be the row's largest, e.g. +inf); labels with one item are left out."""
    from scipy.stats import rankdata

    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0]
    ranks = rankdata(d, axis=1).astype(np.float32)  # 1-based, ties averaged; the item itself last
    self_rank = ranks[np.arange(n), np.arange(n)].astype(np.float64)

    def macro(y: np.ndarray) -> float:
        counts = np.bincount(y)
        same = counts[y] - 1.0
        other = n - 1.0 - same
        rank_sums = (ranks @ np.eye(len(counts), dtype=np.float32)[y])[np.arange(n), y] - self_rank
        before = rank_sums - same * (same + 1) / 2  # (same, other) pairs with the other nearer
        keep = same > 0
        auc = 1.0 - before[keep] / (same[keep] * other[keep])
        return float(np.mean([auc[y[keep] == c].mean() for c in np.unique(y[keep])]))

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    band = [macro(rng.permutation(labels)) for _ in range(n_shuffles)]
    return {"auc": macro(labels), "shuffled95": float(np.quantile(band, quantile))}


def balanced_accuracy(prob_pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over present classes of the expected recall."""
    correct = prob_pred[np.arange(len(labels)), labels]
    classes = np.unique(labels)
    return float(np.mean([correct[labels == c].mean() for c in classes]))


def bootstrap_interval(values: np.ndarray, level: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query values (the queries resampled with
    replacement): how far the figure could move on another draw of as many queries."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    step = max(1, 10_000_000 // len(v))  # resamples drawn at a time: ~80 MB at most
    means = np.concatenate([v[rng.integers(0, len(v), size=(min(step, n_resamples - a), len(v)))].mean(axis=1)
                            for a in range(0, n_resamples, step)])
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def summarise(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-query array (MRR from 'rr'), as plain floats; Hit@1 also with its
    bootstrap 95% interval over the queries (``hit@1_lo95``, ``hit@1_hi95``)."""
    out: dict[str, float] = {}
    for key, v in values.items():
        out["mrr" if key == "rr" else key] = float(np.mean(v)) if len(v) else float("nan")
    if "hit@1" in values:
        out["hit@1_lo95"], out["hit@1_hi95"] = bootstrap_interval(values["hit@1"])
    return out
