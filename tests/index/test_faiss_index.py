"""The vector index against a numpy brute-force reference, and the approximate kinds' recall."""

from __future__ import annotations

import numpy as np
import pytest

from midivae.errors import VectorIndexError
from midivae.index.base import VectorIndex
from midivae.index.faiss_index import FaissIndex, IndexSpec


def brute_force(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return np.maximum(1.0 - q.astype(np.float64) @ b.T.astype(np.float64), 0.0)
    d = ((queries[:, None, :].astype(np.float64) - base[None].astype(np.float64)) ** 2).sum(-1)
    return np.sqrt(d)


def assert_matches_reference(dist: np.ndarray, got_ids: np.ndarray, ref: np.ndarray, ids: np.ndarray, k: int):
    """Same distances; same ids except where ties at the k-th distance allow another choice."""
    for row in range(ref.shape[0]):
        order = np.argsort(ref[row], kind="stable")
        np.testing.assert_allclose(dist[row], ref[row][order[:k]], atol=1e-4)
        kth = ref[row][order[k - 1]]
        sure = set(ids[ref[row] < kth - 1e-4].tolist())
        allowed = set(ids[ref[row] <= kth + 1e-4].tolist())
        got = set(got_ids[row].tolist())
        assert sure <= got <= allowed


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_equals_brute_force_with_ties(metric, rng):
    base = rng.standard_normal((500, 16)).astype(np.float32)
    base[250:300] = base[200:250]  # exact duplicates: ties
    base[300:310] = 3.0 * base[0]  # ties under cosine only
    ids = rng.permutation(10_000)[:500].astype(np.int64)
    queries = np.concatenate([rng.standard_normal((20, 16)), base[[0, 200, 210]]]).astype(np.float32)
    index = FaissIndex(16, IndexSpec(kind="exact", metric=metric))
    assert isinstance(index, VectorIndex)
    index.add(ids, base)
    dist, got = index.search(queries, 10)
    assert_matches_reference(dist, got, brute_force(base, ids, queries, metric), ids, 10)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_after_removals_and_reload(metric, rng, tmp_path):
    base = rng.standard_normal((300, 8)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64) * 7
    index = FaissIndex(8, IndexSpec(metric=metric))
    index.add(ids[:200], base[:200])
    index.add(ids[200:], base[200:])
    assert index.remove(ids[::3]) == 100
    assert index.remove(np.array([999_999])) == 0
    index.save(tmp_path / "ix")
    loaded = FaissIndex.load(tmp_path / "ix")
    keep = np.ones(300, bool)
    keep[::3] = False
    queries = rng.standard_normal((10, 8)).astype(np.float32)
    for ix in (index, loaded):
        assert len(ix) == 200
        dist, got = ix.search(queries, 5)
        assert_matches_reference(dist, got, brute_force(base[keep], ids[keep], queries, metric), ids[keep], 5)
    np.testing.assert_allclose(loaded.vectors(ids[1:3]), index.vectors(ids[1:3]))


def test_more_neighbours_than_vectors_pads():
    index = FaissIndex(4)
    index.add(np.array([5, 6]), np.eye(4, dtype=np.float32)[:2])
    dist, ids = index.search(np.eye(4, dtype=np.float32)[:1], 4)
    assert ids[0, 0] == 5 and (ids[0, 2:] == -1).all() and np.isinf(dist[0, 2:]).all()


def test_bad_inputs_raise():
    index = FaissIndex(4)
    index.add(np.array([1]), np.ones((1, 4), np.float32))
    with pytest.raises(VectorIndexError):
        index.add(np.array([1]), np.ones((1, 4), np.float32))  # id reused
    with pytest.raises(VectorIndexError):
        index.add(np.array([2]), np.ones((1, 5), np.float32))  # wrong dimension
    with pytest.raises(VectorIndexError):
        index.add(np.array([3]), np.full((1, 4), np.nan, np.float32))
    with pytest.raises(VectorIndexError):
        index.search(np.ones((1, 3), np.float32), 1)
    with pytest.raises(VectorIndexError):
        IndexSpec(kind="annoy")


def recall_at_10(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids)]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_on_real_embeddings(kind, real_vectors, rng):
    """recall@10 >= 0.95 against exact, on encoder vectors of real phrases, also after removals."""
    n = real_vectors.shape[0]
    assert n > 2000
    ids = np.arange(n, dtype=np.int64) + 100
    q_rows = rng.choice(n, 200, replace=False)
    queries = real_vectors[q_rows] + 0.05 * rng.standard_normal((200, real_vectors.shape[1])).astype(np.float32)
    exact = FaissIndex(real_vectors.shape[1])
    approx = FaissIndex(real_vectors.shape[1], IndexSpec(kind=kind, ef_search=64, ivf_nprobe=8))
    for ix in (exact, approx):
        ix.add(ids, real_vectors)
        ix.remove(ids[: n // 10])  # tombstones (hnsw) / direct removal
    _, e = exact.search(queries, 10)
    _, a = approx.search(queries, 10)
    assert recall_at_10(a, e) >= 0.95
    assert not np.isin(a, ids[: n // 10]).any()


def test_hnsw_compacts_after_many_removals(rng, tmp_path):
    base = rng.standard_normal((400, 8)).astype(np.float32)
    ids = np.arange(400, dtype=np.int64)
    index = FaissIndex(8, IndexSpec(kind="hnsw", compact_fraction=0.25))
    index.add(ids, base)
    index.remove(ids[:50])
    assert index.n_dead == 50
    index.save(tmp_path / "a")
    assert FaissIndex.load(tmp_path / "a").n_dead == 50
    index.remove(ids[50:150])
    assert index.n_dead == 0 and len(index) == 250
    _, got = index.search(base[200:201], 1)
    assert got[0, 0] == 200


def test_tune_search_settings(rng):
    x = rng.standard_normal((500, 8)).astype(np.float32)
    ids = np.arange(500, dtype=np.int64)
    hnsw = FaissIndex(8, IndexSpec(kind="hnsw"))
    hnsw.add(ids, x)
    exact = FaissIndex(8)
    exact.add(ids, x)
    _, want = exact.search(x[:20], 10)
    hnsw.tune(ef_search=500)  # a candidate list as large as the index: exact results
    _, got = hnsw.search(x[:20], 10)
    assert np.array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    with pytest.raises(VectorIndexError, match="hnsw"):
        exact.tune(ef_search=10)
    with pytest.raises(VectorIndexError, match="ivf"):
        hnsw.tune(nprobe=4)
    with pytest.raises(VectorIndexError, match=">= 1"):
        hnsw.tune(ef_search=0)
