"""Query chunks on several threads give exactly the results of one thread."""

import dataclasses

import numpy as np
import pytest

from midivae.evaluate import baselines, tasks
from midivae.evaluate.data import SongPhrases
from midivae.evaluate.embedding import Embedding
from midivae.evaluate.parallel import map_chunks, thread_count, threads
from midivae.evaluate.versions import VersionSet


def test_map_chunks_covers_every_position_in_order():
    with threads(3):
        parts = map_chunks(lambda at: at.copy(), 10, 3)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert map_chunks(lambda at: at, 0, 3) == []


def test_threads_setting_is_scoped_and_checked():
    default = thread_count()
    with threads(3):
        assert thread_count() == 3
        with threads(1):
            assert thread_count() == 1
        assert thread_count() == 3
    assert thread_count() == default
    with pytest.raises(ValueError):
        with threads(0):
            pass


def _projection(dims: int = 12, seed: int = 0):
    """A dense random projection of the pianoroll: two-stage search over its first 4 dims."""
    w = np.random.default_rng(seed).standard_normal((80640, dims)).astype(np.float32)

    def embed(phrases: np.ndarray) -> np.ndarray:
        return phrases.reshape(len(phrases), -1).astype(np.float32) @ w

    return Embedding("projection", embed, "cosine", dims, dims * 4, coarse_dims=4, shortlist=5)


@pytest.mark.parametrize("method", ["raw_cosine", "projection"])
def test_ranking_tasks_do_not_depend_on_threads(make_songs, monkeypatch, method):
    monkeypatch.setattr(tasks.chunks, "QUERY_CHUNK", 4)  # several chunks per task
    emb = baselines.make_baselines([], 8, ["raw_cosine"])[0] if method == "raw_cosine" else _projection()
    songs = make_songs(10, half=3, seed=5)
    rng = np.random.default_rng(5)
    files = list(songs) + [SongPhrases.from_phrases(s.song_id + "_v2", s.phrases & (rng.random(s.phrases.shape) > 0.2))
                           for s in songs[:5]]
    versions = VersionSet(files, [s.song_id for s in songs] + [s.song_id for s in songs[:5]])
    results = []
    for n in (1, 3):
        with threads(n):
            results.append((tasks.version_identification(versions, emb), tasks.excerpt_retrieval(songs, emb)))
    assert results[0] == results[1]
    assert results[0][0]["n_queries"] == 10


def test_chunks_shrink_on_large_collections_without_changing_results(make_songs, monkeypatch):
    assert tasks.query_chunk(10_000) == tasks.QUERY_CHUNK == 256
    assert tasks.query_chunk(300_000) == tasks.CHUNK_CELLS // 300_000 < 256
    assert tasks.query_chunk(10**9) == 16
    emb = _projection()
    songs = make_songs(10, half=3, seed=6)
    rng = np.random.default_rng(6)
    files = list(songs) + [SongPhrases.from_phrases(s.song_id + "_v2", s.phrases & (rng.random(s.phrases.shape) > 0.2))
                           for s in songs[:5]]
    versions = VersionSet(files, [s.song_id for s in songs] + [s.song_id for s in songs[:5]])

    euclidean = dataclasses.replace(emb, distance="euclidean")

    def run():
        return (tasks.version_identification(versions, emb), tasks.excerpt_retrieval(songs, emb),
                tasks.robustness(songs, emb, n_queries=40, any_key_queries=20),
                tasks.version_identification(versions, emb, trim=0.34),
                tasks.version_identification(versions, euclidean))

    whole = run()
    monkeypatch.setattr(tasks.chunks, "CHUNK_CELLS", 1)  # 16 query rows a chunk: several per task
    assert run() == whole


def test_progress_bar_only_under_a_label(capsys):
    from midivae.evaluate.parallel import progress

    map_chunks(lambda at: at, 10, 3)
    assert capsys.readouterr().err == ""
    with progress("raw: versions"):
        map_chunks(lambda at: at, 10, 3)
    assert "raw: versions" in capsys.readouterr().err


def test_encoding_shows_a_bar_under_a_label(make_songs, capsys):
    from midivae.evaluate.data import flatten
    from midivae.evaluate.parallel import progress

    flat = flatten(make_songs(3, half=2))  # 12 phrases
    emb = baselines.make_baselines([], 8, ["chroma"])[0]
    with progress("chroma: encoding"):
        vecs = tasks.embed_flat(emb, flat, batch=2)
    assert len(vecs) == 12 and "chroma: encoding" in capsys.readouterr().err
