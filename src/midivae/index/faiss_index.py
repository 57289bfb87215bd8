"""The embedded :class:`~midivae.index.base.VectorIndex`: FAISS over a slot table of our own.

Why our own id map rather than ``IndexIDMap2``: HNSW cannot delete, so removal has to be a
tombstone that search skips (a FAISS ``IDSelectorBitmap`` over live slots) and that a later
compaction drops. Vectors live in *slots*, append-only positions that are also the FAISS labels;
``slot_ids`` maps them to the caller's stable int64 ids. The exact kind compacts on every removal
(a memcpy), the approximate kinds once tombstones pass ``compact_fraction``.

Exact search is our own blocked BLAS brute force (2.5x faster than IndexFlat here, vectors
stored once); FAISS serves the approximate kinds.

Metrics: ``cosine`` (vectors L2-normalised, inner product; distance = 1 - cos, in [0, 2]) and
``l2`` (Euclidean distance, not squared).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from midivae.errors import VectorIndexError

KINDS: tuple[str, ...] = ("exact", "hnsw", "ivf")
METRICS: tuple[str, ...] = ("cosine", "l2")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexSpec:
    """How a :class:`FaissIndex` is built and searched (saved beside its vectors)."""

    kind: str = "exact"
    metric: str = "cosine"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    ivf_nlist: int = 0  # 0: about 4 * sqrt(n) at the first build, at most n / 39
    ivf_nprobe: int = 16
    compact_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VectorIndexError(f"unknown index kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.metric not in METRICS:
            raise VectorIndexError(f"unknown metric {self.metric!r} (choose from {', '.join(METRICS)})")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def _fsync_write(path: Path, write) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


class FaissIndex:
    """Exact (flat), HNSW or IVF-flat index with stable ids, tombstones and save/load."""

    def __init__(self, dim: int, spec: IndexSpec = IndexSpec()) -> None:
        if dim <= 0:
            raise VectorIndexError(f"vector dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.spec = spec
        self._tuned: dict[str, int] = {}
        self.metric = spec.metric
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)  # one row per slot
        self._slot_ids = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._faiss: faiss.Index | None = None  # holds every slot, dead ones included
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # sorted live ids, their slots
        self._bitmap: np.ndarray | None = None
        self._selector: faiss.IDSelector | None = None
        self._sq_norms: np.ndarray | None = None  # exact L2: squared norms of the stored vectors
        self._len: int | None = None

    # ---- size and ids -------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._len is None:
            self._len = int(self._alive.sum())
        return self._len

    @property
    def n_dead(self) -> int:
        return int(self._alive.size - self._alive.sum())

    def ids(self) -> np.ndarray:
        return self._slot_ids[self._alive].copy()

    def _sorted_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lookup is None:
            slots = np.flatnonzero(self._alive)
            order = np.argsort(self._slot_ids[slots], kind="stable")
            self._lookup = (self._slot_ids[slots][order], slots[order])
        return self._lookup

    def _slots_of(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 where the id is not in the index."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        sorted_ids, slots = self._sorted_lookup()
        if sorted_ids.size == 0:
            return np.full(ids.size, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == ids, slots[pos], -1)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._slots_of(ids) >= 0

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors (normalised for cosine) of ``ids``; all must exist."""
        slots = self._slots_of(ids)
        if (slots < 0).any():
            missing = np.asarray(ids).ravel()[slots < 0][:3].tolist()
            raise VectorIndexError(f"ids not in the index: {missing}")
        return self._vectors[slots]

    # ---- FAISS structure ------------------------------------------------------------------------
    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2

    def _new_faiss(self, n_train: int) -> faiss.Index:
        metric = self._faiss_metric()
        spec = self.spec
        if spec.kind == "exact":
            return faiss.IndexFlat(self.dim, metric)
        if spec.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, spec.hnsw_m, metric)
            index.hnsw.efConstruction = spec.ef_construction
            index.hnsw.efSearch = spec.ef_search
            return index
        nlist = spec.ivf_nlist or max(1, int(4 * math.sqrt(max(n_train, 1))))
        nlist = max(1, min(nlist, n_train // 39 if n_train >= 39 else 1))
        quantizer = faiss.IndexFlat(self.dim, metric)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, metric)
        index.nprobe = min(spec.ivf_nprobe, nlist)
        return index

    def _rebuild(self) -> None:
        """Drop dead slots and build the FAISS structure again from the live vectors."""
        keep = self._alive
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._slot_ids = self._slot_ids[keep]
        self._alive = np.ones(self._slot_ids.size, dtype=bool)
        self._faiss = None
        self._invalidate()
        self._sq_norms = None
        if self._slot_ids.size and self.spec.kind != "exact":
            self._faiss = self._new_faiss(self._slot_ids.size)
            if not self._faiss.is_trained:
                self._faiss.train(self._vectors)
            self._faiss.add(self._vectors)

    def _invalidate(self) -> None:
        self._len = None
        self._lookup = None
        self._bitmap = None
        self._selector = None

    # ---- mutation -------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (ids.size, self.dim):
            raise VectorIndexError(f"expected vectors of shape ({ids.size}, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise VectorIndexError("vectors contain NaN or infinity")
        if np.unique(ids).size != ids.size or self.contains(ids).any():
            raise VectorIndexError("ids must be new and distinct")
        if ids.size == 0:
            return
        if self.metric == "cosine":
            vectors = normalise(vectors)
        first_build = self._faiss is None and self.spec.kind != "exact"
        self._vectors = np.concatenate([self._vectors, vectors])
        self._slot_ids = np.concatenate([self._slot_ids, ids])
        self._alive = np.concatenate([self._alive, np.ones(ids.size, dtype=bool)])
        self._invalidate()
        self._sq_norms = None
        if first_build:
            self._rebuild()
        elif self._faiss is not None:
            self._faiss.add(vectors)

    def remove(self, ids: np.ndarray) -> int:
        slots = self._slots_of(ids)
        slots = np.unique(slots[slots >= 0])
        if slots.size == 0:
            return 0
        self._alive[slots] = False
        self._invalidate()
        if self.spec.kind == "exact" or self.n_dead > self.spec.compact_fraction * self._alive.size:
            self._rebuild()
        return int(slots.size)

    # ---- search ---------------------------------------------------------------------------------
    def tune(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Search-time recall/speed knobs of the approximate kinds for this open index (never
        saved): HNSW's candidate list ``ef_search``, IVF's probed lists ``nprobe``."""
        for name, value, kind in (("ef_search", ef_search, "hnsw"), ("nprobe", nprobe, "ivf")):
            if value is None:
                continue
            if self.spec.kind != kind:
                raise VectorIndexError(f"{name} applies to {kind} indexes; this one is {self.spec.kind}")
            if value < 1:
                raise VectorIndexError(f"{name} must be >= 1, got {value}")
            self._tuned[name] = int(value)

    def _params(self, ef_search: int | None, nprobe: int | None) -> faiss.SearchParameters | None:
        if self.spec.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(ef_search or self._tuned.get("ef_search") or self.spec.ef_search)
        elif self.spec.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = int(nprobe or min(self._tuned.get("nprobe") or self.spec.ivf_nprobe, self._faiss.nlist))
        else:
            params = None
        if self.n_dead:
            if self._selector is None:
                self._bitmap = np.packbits(self._alive, bitorder="little")
                self._selector = faiss.IDSelectorBitmap(self._alive.size, faiss.swig_ptr(self._bitmap))
            params = params or faiss.SearchParameters()
            params.sel = self._selector
        return params

    def search(
        self, vectors: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"query vectors must have shape (n, {self.dim}), got {vectors.shape}")
        n = vectors.shape[0]
        if len(self) == 0 or k <= 0:
            return np.full((n, max(k, 0)), np.inf, dtype=np.float32), np.full((n, max(k, 0)), -1, np.int64)
        if self.metric == "cosine":
            vectors = normalise(vectors)
        if self.spec.kind == "exact":
            raw, slots = self._exact_search(vectors, k)
        else:
            raw, slots = self._faiss.search(vectors, k, params=self._params(ef_search, nprobe))
        dist = np.maximum(1.0 - raw, 0.0) if self.metric == "cosine" else np.sqrt(np.maximum(raw, 0.0))
        missing = slots < 0
        if missing.any():
            dist[missing] = np.inf
            return dist.astype(np.float32), np.where(missing, -1, self._slot_ids[np.maximum(slots, 0)])
        return dist.astype(np.float32, copy=False), self._slot_ids[slots]

    def _exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force as blocked matrix products (BLAS) with a running top-k.

        Faster here than FAISS's flat index (measured 2.5x on 24 queries x 38k x 128), and the
        vectors are stored once. Returns FAISS conventions: similarity for cosine (larger is
        nearer), squared L2 otherwise; all slots are live (exact compacts on every removal).
        """
        base = self._vectors
        n, nq = base.shape[0], queries.shape[0]
        kk = min(k, n)
        if self.metric == "l2" and self._sq_norms is None:
            self._sq_norms = np.einsum("ij,ij->i", base, base)
        block = max(4096, (1 << 24) // max(nq, 1))
        best_s = best_i = None  # smallest "score" (negated similarity, or |v|^2 - 2 q.v) so far
        for start in range(0, n, block):
            part = base[start : start + block]
            score = part @ queries.T  # (block, nq): BLAS gemv for one query
            score = score.T
            if self.metric == "l2":
                score = self._sq_norms[start : start + block][None, :] - 2.0 * score
            else:
                score = -score
            if kk < score.shape[1]:
                top = np.argpartition(score, kk - 1, axis=1)[:, :kk]
                score = np.take_along_axis(score, top, 1)
            else:
                top = np.broadcast_to(np.arange(score.shape[1]), score.shape)
            top = top + start
            if best_s is None:
                best_s, best_i = score, top
            else:
                cand_s = np.concatenate([best_s, score], axis=1)
                cand_i = np.concatenate([best_i, top], axis=1)
                keep = np.argpartition(cand_s, kk - 1, axis=1)[:, :kk]
                best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
        order = np.argsort(best_s, axis=1, kind="stable")
        best_s = np.take_along_axis(best_s, order, 1)
        best_i = np.take_along_axis(best_i, order, 1)
        if self.metric == "l2":  # exact differences for the k winners (the expansion cancels near 0)
            diff = base[best_i] - queries[:, None, :]
            best_s = np.einsum("qkd,qkd->qk", diff, diff)
            order = np.argsort(best_s, axis=1, kind="stable")
            best_s = np.take_along_axis(best_s, order, 1)
            best_i = np.take_along_axis(best_i, order, 1)
        else:
            best_s = -best_s
        if kk < k:
            pad = k - kk
            best_s = np.pad(best_s, ((0, 0), (0, pad)), constant_values=np.nan)
            best_i = np.pad(best_i, ((0, 0), (0, pad)), constant_values=-1)
        return best_s.astype(np.float32, copy=False), best_i

    def distances_to(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact distances ``(n_queries, len(ids))`` from queries to stored vectors (for re-ranking)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        stored = self.vectors(ids)
        if self.metric == "cosine":
            return np.maximum(1.0 - normalise(queries) @ stored.T, 0.0).astype(np.float32)
        sq = (queries**2).sum(1)[:, None] + (stored**2).sum(1)[None, :] - 2.0 * queries @ stored.T
        return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write into ``directory`` (a fresh folder of the caller's; each file is fsynced)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "dim": self.dim, "spec": asdict(self.spec)}
        _fsync_write(directory / "vectors.npy", lambda fh: np.save(fh, self._vectors))
        _fsync_write(directory / "slot_ids.npy", lambda fh: np.save(fh, self._slot_ids))
        _fsync_write(directory / "alive.npy", lambda fh: np.save(fh, self._alive))
        if self.spec.kind != "exact" and self._faiss is not None:
            blob = faiss.serialize_index(self._faiss)
            _fsync_write(directory / "faiss.index", lambda fh: fh.write(blob.tobytes()))
        _fsync_write(directory / "index.json", lambda fh: fh.write(json.dumps(meta).encode()))

    @classmethod
    def load(cls, directory: Path) -> FaissIndex:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "index.json").read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                raise VectorIndexError(f"{directory}: index format {meta.get('format_version')} is not supported")
            index = cls(int(meta["dim"]), IndexSpec(**meta["spec"]))
            index._vectors = np.load(directory / "vectors.npy")
            index._slot_ids = np.load(directory / "slot_ids.npy")
            index._alive = np.load(directory / "alive.npy")
            index._invalidate()
            if not (index._vectors.shape == (index._slot_ids.size, index.dim) and index._alive.size == index._slot_ids.size):
                raise VectorIndexError(f"{directory}: vector, id and liveness tables disagree")
            if index.spec.kind == "exact":
                index._rebuild()
            elif (directory / "faiss.index").exists():
                blob = np.fromfile(directory / "faiss.index", dtype=np.uint8)
                index._faiss = faiss.deserialize_index(blob)
                if index._faiss.ntotal != index._slot_ids.size:
                    raise VectorIndexError(f"{directory}: FAISS file holds {index._faiss.ntotal} vectors, "
                                           f"tables {index._slot_ids.size}")
            elif index._slot_ids.size:
                index._rebuild()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise VectorIndexError(f"{directory}: cannot load vector index ({exc})") from None
        return index

    def with_spec(self, **changes) -> FaissIndex:
        """The same live vectors under another spec (e.g. exact -> hnsw), rebuilt."""
        other = FaissIndex(self.dim, replace(self.spec, **changes))
        live = self._alive
        if live.any():
            other.add(self._slot_ids[live], self._vectors[live])
        return other
