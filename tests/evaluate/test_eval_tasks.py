import numpy as np
import pytest

from midivae.evaluate import baselines, tasks
from midivae.evaluate.embedding import Embedding


def identity(phrases):
    return np.asarray(phrases, dtype=np.float32).reshape(len(phrases), -1)


def constant(phrases):
    return np.ones((len(phrases), 8), dtype=np.float32)


def test_excerpt_identity_finds_every_repeat(songs):
    r = tasks.excerpt_retrieval(songs, identity, "euclidean")
    assert r["hit@1"] == 1.0 and r["mrr"] == 1.0
    assert r["n_queries"] == 3 * len(songs)


def test_excerpt_constant_gets_chance_not_one(songs):
    r = tasks.excerpt_retrieval(songs, constant, "euclidean")
    assert r["hit@1"] == pytest.approx(1 / len(songs))
    assert r["hit@10"] == pytest.approx(10 / len(songs))


def test_excerpt_random_floor_near_chance(songs):
    r = tasks.excerpt_retrieval(songs, baselines.random_floor(16, seed=1))
    assert r["hit@1"] < 0.35


def test_original_protocol_identity_and_constant(songs):
    assert tasks.original_protocol(songs, identity, "cosine")["top1"] == 1.0
    c = tasks.original_protocol(songs, constant, "euclidean")
    assert c["top1"] == pytest.approx(1 / len(songs))


def test_original_protocol_uses_sampling(make_songs):
    songs = make_songs(40)
    noisy = Embedding("noisy", identity, "euclidean", 8, 32,
                      sample=lambda ph, rng: rng.standard_normal((len(ph), 8)).astype(np.float32))
    assert tasks.original_protocol(songs, noisy)["top1"] < 0.3
