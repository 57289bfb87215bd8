import numpy as np
import pytest

from midivae.evaluate.metrics import (
    balanced_accuracy,
    first_relevant_metrics,
    knn_vote,
    precision_at_k,
    rank_of_target,
)


def test_unique_nearest_is_a_hit():
    d = np.array([[0.0, 1.0, 2.0], [3.0, 1.0, 2.0]])
    s = rank_of_target(d, np.array([0, 2]))
    assert np.allclose(s.hit(1), [1.0, 0.0])
    assert np.allclose(s.reciprocal_rank(), [1.0, 0.5])


def test_ties_count_in_expectation():
    d = np.zeros((1, 4))  # all tied: rank uniform on 1..4
    s = rank_of_target(d, np.array([2]))
    assert s.hit(1)[0] == pytest.approx(0.25)
    assert s.hit(2)[0] == pytest.approx(0.5)
    assert s.reciprocal_rank()[0] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_first_relevant_matches_single_relevant_formula():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 3, size=(50, 9)).astype(float)
    target = rng.integers(0, 9, size=50)
    rel = np.zeros_like(d, dtype=bool)
    rel[np.arange(50), target] = True
    a = first_relevant_metrics(d, rel, (1, 3))
    s = rank_of_target(d, target)
    assert np.allclose(a["hit@1"], s.hit(1))
    assert np.allclose(a["hit@3"], s.hit(3))
    assert np.allclose(a["rr"], s.reciprocal_rank())


def test_first_relevant_by_enumeration():
    # 2 relevant and 2 irrelevant all tied: first relevant is at rank 1 w.p. 1/2, 2 w.p. 1/3, 3 w.p. 1/6
    d = np.zeros((1, 4))
    rel = np.array([[True, True, False, False]])
    m = first_relevant_metrics(d, rel, (1, 2))
    assert m["hit@1"][0] == pytest.approx(0.5)
    assert m["hit@2"][0] == pytest.approx(5 / 6)
    assert m["rr"][0] == pytest.approx(0.5 + 1 / 3 / 2 + 1 / 6 / 3)


def test_constant_distances_give_base_rates():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    d = np.zeros((10, 10))
    np.fill_diagonal(d, np.inf)
    same = labels[:, None] == labels[None, :]
    p = precision_at_k(d, same, 3)
    # each query's 3 neighbours are drawn from the 9 others
    expected = np.array([(same[i].sum() - 1) / 9 for i in range(10)])
    assert np.allclose(p, expected)
    prob = knn_vote(d, labels, 3, k=3)
    # votes follow class frequencies among the others: no class but the majority can win
    assert balanced_accuracy(prob, labels) == pytest.approx(1 / 3, abs=0.02)


def test_two_stage_ranks_the_shortlist_by_the_whole_vector_then_the_rest():
    from midivae.evaluate.metrics import pairwise, prepare

    # coarse (first column) order: 0, 1, 2, 3; the whole vector prefers 1 over 0
    x = np.array([[1.0, 0.0], [0.99, 0.5], [0.9, 0.0], [0.5, 0.0]], dtype=np.float32)
    q = np.array([[1.0, 0.6]], dtype=np.float32)
    whole = pairwise(prepare(q, "euclidean"), prepare(x, "euclidean"))[0]
    d = pairwise(prepare(q, "euclidean", 1, 2), prepare(x, "euclidean", 1, 2))[0]
    assert list(np.argsort(d)) == [1, 0, 2, 3]
    assert np.allclose(d[:2], whole[:2])  # the shortlist keeps whole-vector distances
    assert d[2:].min() > d[:2].max()
    # a shortlist as long as the index is the plain exact search
    assert np.allclose(pairwise(prepare(q, "cosine", 1, 4), prepare(x, "cosine", 1, 4)), pairwise(prepare(q, "cosine"), prepare(x, "cosine")))


def test_two_stage_keeps_through_take():
    from midivae.evaluate.metrics import prepare, take

    v = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    p = take(prepare(v, "cosine", 2, 3), np.array([4, 1]))
    assert p.shortlist == 3 and p.coarse is not None
    assert np.allclose(p.coarse.vectors, prepare(v[[4, 1], :2], "cosine").vectors)



def test_fingerprints_count_in_an_index_shorter_than_the_shortlist():
    from midivae.evaluate.metrics import pairwise, prepare

    x = np.array([[1.0, 0.0, 5, 6], [0.99, 0.14, 7, 8]], dtype=np.float32)  # 2 coordinates, 2 signature columns
    q = np.array([[1.0, 0.0, 7, 8]], dtype=np.float32)  # the first row itself, the landmarks of the second
    d = pairwise(prepare(q, "cosine", 1, 10, 2, 0.2), prepare(x, "cosine", 1, 10, 2, 0.2))[0]
    plain = pairwise(prepare(q[:, :2], "cosine"), prepare(x[:, :2], "cosine"))[0]
    assert np.argmin(plain) == 0 and np.argmin(d) == 1  # the fingerprint decides
    assert np.allclose(d, plain + 0.2 * np.array([1.0, 0.0]))


def test_shuffled_label_band_matches_the_vote_and_stays_near_chance():
    """With the true labels the fast path gives knn_vote's and precision_at_k's figures; shuffling
    labels over two perfectly separated groups gives about chance, the same for the same seed."""
    from midivae.evaluate.metrics import balanced_accuracy, knn_vote, precision_at_k, shuffled_label_band

    y = np.repeat([0, 1], 20)
    d = np.where(y[:, None] == y[None, :], 0.1, 1.0) + np.random.default_rng(1).random((40, 40)) * 0.01
    np.fill_diagonal(d, np.inf)
    same = (y[:, None] == y[None, :]) & ~np.eye(40, dtype=bool)
    assert balanced_accuracy(knn_vote(d, y, 2, 10), y) == 1.0 and precision_at_k(d, same, 10).mean() == 1.0
    band = shuffled_label_band(d, y, 2, 10, n_shuffles=300, seed=3)
    assert 0.5 < band["balanced"] < 0.75 and 0.45 < band["precision@10"] < 0.7
    assert band == shuffled_label_band(d, y, 2, 10, n_shuffles=300, seed=3)
    one = shuffled_label_band(d, y, 2, 10, n_shuffles=1, quantile=1.0, seed=0)  # one shuffle, its own figures
    perm = np.random.default_rng(0).permutation(y)
    same_perm = (perm[:, None] == perm[None, :]) & ~np.eye(40, dtype=bool)
    assert one["balanced"] == pytest.approx(balanced_accuracy(knn_vote(d, perm, 2, 10), perm))
    assert one["precision@10"] == pytest.approx(precision_at_k(d, same_perm, 10).mean())


def test_bootstrap_interval_brackets_the_mean():
    from midivae.evaluate.metrics import bootstrap_interval

    assert bootstrap_interval(np.full(50, 0.7)) == pytest.approx((0.7, 0.7))
    hits = np.r_[np.ones(200), np.zeros(200)]
    lo, hi = bootstrap_interval(hits)
    assert 0.43 < lo < 0.5 < hi < 0.57  # about 0.5 -/+ 1.96 * 0.025
    assert bootstrap_interval(hits) == (lo, hi)  # seeded
    assert np.isnan(bootstrap_interval(np.array([]))[0])


def test_same_label_auc_by_enumeration():
    """Per item, the share of (same-label, other) pairs with the same-label item nearer (ties
    half), averaged per label, then over labels; labels of one item are left out."""
    from midivae.evaluate.metrics import same_label_auc

    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # label 3: one item, no pair
    d = rng.integers(0, 4, (10, 10)).astype(float)  # many ties
    np.fill_diagonal(d, np.inf)
    per = {}
    for i in range(10):
        same = [j for j in range(10) if j != i and labels[j] == labels[i]]
        other = [j for j in range(10) if j != i and labels[j] != labels[i]]
        if same:
            wins = sum((d[i, s] < d[i, o]) + 0.5 * (d[i, s] == d[i, o]) for s in same for o in other)
            per.setdefault(labels[i], []).append(wins / (len(same) * len(other)))
    want = np.mean([np.mean(v) for v in per.values()])
    got = same_label_auc(d, labels, n_shuffles=20)
    assert got["auc"] == pytest.approx(want)
    assert 0.0 <= got["shuffled95"] <= 1.0


def test_sparse_cosine_rows_are_the_dense_unit_rows_and_share_the_indices():
    import scipy.sparse as sp

    from midivae.evaluate.metrics import pairwise, prepare

    rng = np.random.default_rng(3)
    dense = (rng.random((6, 40)) < 0.2).astype(np.float32)
    dense[2] = 0  # an empty phrase stays a zero row
    x = sp.csr_matrix(dense)
    p = prepare(x, "cosine")
    assert np.allclose(p.vectors.toarray(), prepare(dense, "cosine").vectors, atol=1e-7)
    assert np.shares_memory(p.vectors.indices, x.indices) and not np.shares_memory(p.vectors.data, x.data)
    assert not p.vectors[2].nnz and p.sq_norms[2] == 0 and np.all(p.sq_norms[[0, 1, 3, 4, 5]] == 1)
    assert np.allclose(pairwise(p, p), pairwise(prepare(dense, "cosine"), prepare(dense, "cosine")), atol=1e-6)
