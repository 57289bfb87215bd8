"""Task 7: cost, dimensions, bytes per phrase, encode speed and single-query exact-search time,
timed alike for every method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten, unpack
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding, embed_phrases
from midivae.evaluate.metrics import Prepared, is_two_stage, pairwise
from midivae.evaluate.parallel import one_blas_thread
from midivae.evaluate.tasks.chunks import embed_flat, flat_notes
from midivae.verify import PhraseNotes, VerifyConfig, near_ties, nearest, query_codes, reorder_one

QUERY_K = 100


DENSE_SAMPLE_ROWS = 1000


#: timed passes over the queries; the fastest pass counts (the others met other jobs on this machine)
TIMING_REPEATS = 5
#: passes go on until they have taken this long: a fast method's five passes would otherwise fit
#: in 50 ms, inside one burst of another job, where a slow method's span seconds
TIMING_MIN_SECONDS = 1.0
TIMING_MAX_PASSES = 1000


def _seconds_per_call(run: Callable[[int], object], n: int, repeats: int = TIMING_REPEATS,
                      min_seconds: float | None = None) -> float:
    """Mean seconds of ``run(i)`` over i < n, one call at a time, in the fastest pass (after one
    untimed ``run(0)`` that warms caches) of at least ``repeats`` passes that together take at
    least ``min_seconds``: the usual best-of-N of micro-benchmarks, every method sampled over
    the same stretch of time (as timeit's autorange)."""
    import time

    min_seconds = TIMING_MIN_SECONDS if min_seconds is None else min_seconds
    run(0)
    best, passes, start = float("inf"), 0, time.perf_counter()
    while passes < repeats or (time.perf_counter() - start < min_seconds and passes < TIMING_MAX_PASSES):
        t0 = time.perf_counter()
        for i in range(n):
            run(i)
        best = min(best, (time.perf_counter() - t0) / n)
        passes += 1
    return best


def select_top(sim: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest similarities, largest first (a partial sort, then a sort of ``k``)."""
    n = sim.size
    kept = np.argpartition(sim, n - k)[n - k :] if k < n else np.arange(n)
    return kept[np.argsort(-sim[kept], kind="stable")]


@dataclass(frozen=True)
class ExactScan:
    """Dense vectors laid out for one query's scan: row-major ``(n, d)`` or column-major ``(d, n)``
    (a short vector scans faster column-major on this BLAS, a long one row-major; the cost task
    times both and keeps the faster, for every method alike)."""

    matrix: np.ndarray
    sq_norms: np.ndarray
    distance: str
    column_major: bool

    @classmethod
    def of(cls, vectors: np.ndarray, sq_norms: np.ndarray, distance: str, column_major: bool) -> "ExactScan":
        v = np.asarray(vectors, dtype=np.float32)
        return cls(np.ascontiguousarray(v.T if column_major else v), np.asarray(sq_norms, np.float32), distance,
                   column_major)

    def similarities(self, q: np.ndarray) -> np.ndarray:
        """Larger is nearer: the inner product (unit vectors), or ``2 q.x - |x|^2`` (same order as -L2)."""
        dot = q @ self.matrix if self.column_major else self.matrix @ q
        return 2.0 * dot - self.sq_norms if self.distance == "euclidean" else dot

    def top_k(self, q: np.ndarray, k: int) -> np.ndarray:
        return select_top(self.similarities(q), k)


#: the prefix-bound scan reads this share of each rotated vector's axes first (on the model's
#: 128-dim posterior means, 56 axes: ~3% of the rows then read whole; at 27,151 phrases the top-100
#: query 0.65 -> 0.47 ms, benchmarks/exact_scan.py)
PREFIX_SHARE = 0.44
#: vectors the rotation is fitted on (a seeded sample of the index; any rotation keeps the search exact)
PREFIX_FIT_ROWS = 5000


@dataclass(frozen=True)
class PrefixBoundScan:
    """An exact top-k by Euclidean distance (on unit vectors, the cosine order too) that reads most
    rows only in part. The vectors are rotated onto their principal axes (an orthonormal rotation
    keeps every distance); the distance over the first ``prefix`` axes bounds the whole from below,
    so once the ``k`` rows of smallest bound are read whole, only rows whose bound does not exceed
    the largest of those distances can still be among the nearest, and only they are read whole.
    The same top ``k`` as :class:`ExactScan`, for a fraction of the bytes where the variance sits
    in the first axes (a plain scan of a short vector is memory-bound)."""

    mean: np.ndarray
    rotation: np.ndarray
    head: np.ndarray  # (prefix, n): the first axes, column-major
    head_sq: np.ndarray
    rotated: np.ndarray  # (n, d): every axis, read for the few rows that need it
    sq: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray, share: float = PREFIX_SHARE, fit_rows: int = PREFIX_FIT_ROWS,
           seed: int = 0) -> "PrefixBoundScan":
        v = np.asarray(vectors, dtype=np.float32)
        rng = np.random.default_rng(seed)
        fit = v[rng.choice(len(v), size=min(fit_rows, len(v)), replace=False)] if len(v) else v
        mean = fit.mean(axis=0) if len(fit) else np.zeros(v.shape[1], np.float32)
        _, _, vt = np.linalg.svd(fit - mean, full_matrices=True)
        rotation = np.ascontiguousarray(vt.T, dtype=np.float32)
        rotated = np.ascontiguousarray((v - mean) @ rotation)
        m = max(1, int(round(share * v.shape[1])))
        head = np.ascontiguousarray(rotated[:, :m].T)
        return cls(mean.astype(np.float32), rotation, head, np.einsum("ij,ij->j", head, head),
                   rotated, np.einsum("ij,ij->i", rotated, rotated))

    def top_k(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the ``k`` nearest, nearest first, and their squared distances less ``|q|^2``
        (after the rotation; the same order as the distance)."""
        n, m = self.rotated.shape[0], self.head.shape[0]
        y = (np.asarray(q, np.float32) - self.mean) @ self.rotation
        bound = self.head_sq - 2.0 * (y[:m] @ self.head)  # the prefix's squared distance less |y_prefix|^2
        if k >= n:
            rows = np.arange(n)
        else:
            first = np.argpartition(bound, k)[:k]
            worst = float((self.sq.take(first) - 2.0 * (self.rotated.take(first, axis=0) @ y)).max())
            tail = float(y[m:] @ y[m:])  # whole = prefix + the rest's; a bound above worst + tail cannot come in
            rows = np.flatnonzero(bound <= worst + tail + 1e-4 * (1.0 + abs(worst) + tail))
        dist = self.sq.take(rows) - 2.0 * (self.rotated.take(rows, axis=0) @ y)
        keep = np.argpartition(dist, k)[:k] if k < rows.size else np.arange(rows.size)
        keep = keep[np.argsort(dist[keep], kind="stable")]
        return rows[keep], dist[keep]


def two_stage_top_k(coarse: ExactScan, fine: np.ndarray, fine_sq: np.ndarray, distance: str, shortlist: int,
                    coarse_q: np.ndarray, q: np.ndarray, k: int,
                    fingerprints: tuple[np.ndarray, np.ndarray, float] | None = None,
                    verify: NoteCheck | None = None) -> np.ndarray:
    """Scan the coarse vectors, re-rank the ``shortlist`` nearest by the whole vectors (row-major
    ``fine``; with ``fingerprints`` = (index signatures, query signature, weight) plus the
    fingerprint term), the rest of the top ``k`` after them in coarse order (as ``pairwise`` ranks);
    with ``verify``, the near-tied first ones re-ordered by their notes (:func:`verified_order`)."""
    sim = coarse.similarities(coarse_q)
    if shortlist < k:  # the rest of the top k keeps the coarse order
        top = select_top(sim, k)
        short, rest = top[:shortlist], top[shortlist:]
    else:  # the re-rank orders the shortlist: no need to sort it first
        n = sim.size
        short = np.argpartition(sim, n - shortlist)[n - shortlist :] if shortlist < n else np.arange(n)
        rest = None
    dot = fine.take(short, axis=0) @ q  # take: a faster gather than fancy indexing
    dist = fine_sq.take(short) - 2.0 * dot if distance == "euclidean" else -dot  # same order as the distance
    if fingerprints is not None:
        signatures, signature, weight = fingerprints
        if signature[0] >= 0:  # a phrase without landmarks matches nothing: the same term for all
            same = (signatures.take(short, axis=0) == signature).sum(axis=1, dtype=np.float32)
            dist -= np.float32(weight / signature.size) * same
    order = np.argsort(dist, kind="stable")
    ranked = short[order]
    if verify is not None:
        ranked = verified_order(ranked, dist[order], verify)
    return ranked[:k] if rest is None else np.concatenate([ranked, rest])


@dataclass(frozen=True)
class NoteCheck:
    """What one query's exact verify reads: its note codes (midivae.verify.query_codes) and the index's notes."""

    query: np.ndarray
    index: PhraseNotes
    config: VerifyConfig


def verified_order(ranked: np.ndarray, dist: np.ndarray, check: NoteCheck) -> np.ndarray:
    """``ranked`` (index rows, nearest first, at ``dist``: any distance up to a constant) as the
    index's search orders them after its exact verify (midivae.verify.reorder_one)."""
    return reorder_one(ranked, dist, check.query, check.index, check.config)


def _fastest_layout(time_layout: Callable[[bool], float]) -> float:
    """Seconds per query in the faster of the two layouts."""
    return min(time_layout(False), time_layout(True))


def dense_scan_ms(index: Prepared, queries: Prepared, n_queries: int = 20) -> float:
    """The same exact scan over the vectors stored densely (float32, as the original work compared
    pianorolls): timed over up to ``DENSE_SAMPLE_ROWS`` rows on one query at a time and scaled
    linearly to the whole index, so a sparse baseline's cost is also shown in its plain form."""
    rows = min(DENSE_SAMPLE_ROWS, len(index))
    x = np.asarray(index.vectors[:rows].toarray(), dtype=np.float32)
    qs = [np.asarray(queries.vectors[i].toarray(), dtype=np.float32).ravel() for i in range(min(n_queries, len(queries)))]
    return _scan_ms(x, index.sq_norms[:rows], index.distance, qs, len(index))


def _scan_ms(rows: np.ndarray, sq_norms: np.ndarray, distance: str, queries: list[np.ndarray], n_index: int) -> float:
    """ms per query of the :class:`ExactScan` of dense ``rows`` (the faster layout, one BLAS
    thread), scaled linearly from its rows to an index of ``n_index`` phrases."""
    k = min(QUERY_K, len(rows))

    def timed(column_major: bool) -> float:
        scan = ExactScan.of(rows, sq_norms, distance, column_major)
        return _seconds_per_call(lambda i: scan.top_k(queries[i], k), len(queries))

    with one_blas_thread():
        return _fastest_layout(timed) * 1000 * n_index / len(rows)


#: rounds of (method's query timing, raw dense scan timing) in alternation, and the queries the
#: raw scan is timed on (each ~25 ms over its 1,000 sampled rows)
PAIRED_ROUNDS = 3
PAIRED_DENSE_QUERIES = 5


def raw_dense_rows(flat: Flat, query_phrases: np.ndarray,
                   n_queries: int = PAIRED_DENSE_QUERIES) -> tuple[np.ndarray, list[np.ndarray]]:
    """The raw-pianoroll cosine baseline's vectors as :func:`dense_scan_ms` scans them for that
    row (unit float32 rows of 80,640 cells): up to ``DENSE_SAMPLE_ROWS`` rows of ``flat``, and the
    queries."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(unpack(flat.packed[: min(DENSE_SAMPLE_ROWS, len(flat))])), list(unit(np.asarray(query_phrases[:n_queries])))


def paired_query_ms(index: Prepared, queries: Prepared, k: int, flat: Flat, query_phrases: np.ndarray,
                    rounds: int = PAIRED_ROUNDS, checks: list[NoteCheck] | None = None) -> tuple[float, float]:
    """(query ms, raw dense scan ms), each the fastest of ``rounds`` timings taken in alternation:
    both meet the same machine, so their ratio does not depend on what else ran on it meanwhile
    (timed apart, in one report's method after another, the ratio moved by 2x)."""
    raw_rows, raw_queries = raw_dense_rows(flat, query_phrases)
    query, dense = float("inf"), float("inf")
    for _ in range(rounds):
        query = min(query, query_seconds(index, queries, k, checks) * 1000)
        dense = min(dense, _scan_ms(raw_rows, np.ones(len(raw_rows), np.float32), "cosine", raw_queries, len(flat)))
    return query, dense


def query_seconds(index: Prepared, queries: Prepared, k: int, checks: list[NoteCheck] | None = None,
                  forms: dict[str, float] | None = None) -> float:
    """Seconds per single-query top-k search on one thread: the faster exact search of the dense
    vectors, the :class:`ExactScan` (either layout) or the :class:`PrefixBoundScan` (two-stage
    vectors: :func:`two_stage_top_k`), a scipy sparse product for sparse ones;
    ``checks`` (one per query): each search ends with the exact verify (:func:`verified_order`);
    ``forms``, where given, receives each dense form's seconds by name."""
    import scipy.sparse as sp

    if sp.issparse(index.vectors):
        xt = sp.csr_matrix(index.vectors.T)

        def sparse_search(i: int) -> None:
            d = np.asarray((queries.vectors[i] @ xt).todense()).ravel()
            d = index.sq_norms - 2.0 * d if index.distance == "euclidean" else -d
            np.argpartition(d, k - 1)[:k]

        return _seconds_per_call(sparse_search, len(queries))
    qv = queries.vectors
    fine, fine_sq = index.vectors, index.sq_norms.astype(np.float32)

    def timed(column_major: bool) -> float:
        if is_two_stage(queries, index):
            c, qc = index.coarse, queries.coarse.vectors
            coarse = ExactScan.of(c.vectors, c.sq_norms, c.distance, column_major)
            fp = index.signatures is not None and queries.signatures is not None
            search = lambda i: two_stage_top_k(coarse, fine, fine_sq, index.distance, index.shortlist, qc[i], qv[i], k,
                                               (index.signatures, queries.signatures[i], index.fp_weight) if fp else None,
                                               checks[i] if checks else None)
        else:
            scan = ExactScan.of(index.vectors, index.sq_norms, index.distance, column_major)

            def search(i: int) -> np.ndarray:
                sim = scan.similarities(qv[i])
                top = select_top(sim, k)
                return verified_order(top, -sim[top], checks[i]) if checks else top
        return _seconds_per_call(search, len(qv))

    def pruned() -> float:  # the exact prefix-bound scan, for a one-stage method
        scan = PrefixBoundScan.of(index.vectors)
        half = 0.5 if index.distance == "cosine" else 1.0  # unit vectors: |x - q|^2 = 2 (1 - cos)

        def search(i: int) -> np.ndarray:
            top, dist = scan.top_k(qv[i], k)
            return verified_order(top, half * dist, checks[i]) if checks else top
        return _seconds_per_call(search, len(qv))

    with one_blas_thread():
        timings = {"two-stage" if is_two_stage(queries, index) else "plain": _fastest_layout(timed)}
        if not is_two_stage(queries, index) and len(index) > k:
            timings["prefix-bound"] = pruned()
    if forms is not None:
        forms.update(timings)
    return min(timings.values())


def verified_share(index: Prepared, queries: Prepared, checks: list[NoteCheck]) -> float:
    """The share of the timed queries with a near tie among their first candidates: those the
    verify runs its join on (the others cost one comparison)."""
    config = checks[0].config
    near = near_ties(nearest(pairwise(queries, index), config.candidates)[1], config.margin)
    return float(near[:, 0].mean()) if len(near) else 0.0


def cost(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    n_encode: int = 512,
    n_queries: int = 100,
    vectors=None,
    seed: int = 0,
    paired: bool = False,
    notes=None,
) -> dict[str, float]:
    """Dimensions, bytes per phrase, encode phrases/s and exact-search ms per query; with
    ``paired``, the query and the raw-pianoroll dense scan also timed in alternation
    (:func:`paired_query_ms`: ``query_ms_paired``, ``raw_dense_ms_paired``, ``speedup_vs_raw_dense``).

    Query time: one query at a time, top-``QUERY_K`` phrases over every phrase of ``songs`` on one
    thread, mean over ``n_queries`` queries in the fastest of at least ``TIMING_REPEATS`` passes
    that take at least ``TIMING_MIN_SECONDS`` together: the same numpy scan for every dense
    method (an exact scan, or the two-stage scan-and-re-rank the embedding's search uses), a scipy
    sparse product for the sparse ones (and, for them, the dense scan too: ``query_ms_dense``).
    """
    import time

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(n_encode, len(flat)), replace=False))
    phrases = np.concatenate(list(flat.batches(rows, 256)))
    timed = Embedding(emb.name, emb.timing_embed or emb.embed, emb.distance, emb.dims, emb.bytes_per_phrase)
    embed_phrases(timed, phrases[:8])  # warm-up (lazy initialisation)
    t0 = time.perf_counter()
    embed_phrases(timed, phrases)
    enc = time.perf_counter() - t0
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    index = emb.prepare(vecs)
    qv = emb.prepare(embed_phrases(emb, phrases[:n_queries], flat.tempo[rows[:n_queries]]))
    k = min(QUERY_K, len(flat))
    checks = None
    if emb.verify is not None:  # the search's exact verify, each query's notes read with its vector
        index_notes = flat_notes(emb, flat, notes)
        query_notes = PhraseNotes.from_phrases(phrases[:n_queries])
        index_notes.windows(emb.verify.max_offset)  # index-side, computed once as the vectors' norms
        checks = [NoteCheck(query_codes(query_notes, i), index_notes, emb.verify) for i in range(len(query_notes))]
    forms: dict[str, float] = {}
    seconds = query_seconds(index, qv, k=k, checks=checks, forms=forms)
    extra: dict[str, object] = {"query_scan": min(forms, key=forms.get)} if forms else {}
    if checks:
        extra["verified_share"] = verified_share(index, qv, checks)
        # what the verify stores beside each vector: 3 bytes a note (midivae.verify.PhraseNotes.to_blobs)
        extra["notes_bytes_per_phrase"] = float(3 * index_notes.counts.mean()) if len(index_notes) else 0.0
    if hasattr(index.vectors, "toarray"):
        extra["query_ms_dense"] = dense_scan_ms(index, qv)
    if paired:
        query_ms, dense_ms = paired_query_ms(index, qv, k, flat, phrases, checks=checks)
        extra.update(query_ms_paired=query_ms, raw_dense_ms_paired=dense_ms, speedup_vs_raw_dense=dense_ms / query_ms,
                     paired_rounds=PAIRED_ROUNDS, paired_dense_queries=PAIRED_DENSE_QUERIES)
    return {
        **extra,
        "dims": int(emb.dims),
        "bytes_per_phrase": int(emb.bytes_per_phrase),
        "encode_phrases_per_s": float(len(phrases) / enc) if enc > 0 else float("inf"),
        "query_ms": float(seconds * 1000),
        "query_n": int(len(qv)),
        "query_repeats": TIMING_REPEATS,
        "query_min_seconds": TIMING_MIN_SECONDS,
        "query_k": int(min(QUERY_K, len(flat))),
        "index_phrases": int(len(flat)),
    }
