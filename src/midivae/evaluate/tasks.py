"""The evaluation tasks, one function each, every one taking an embedding function.

``embed`` is an :class:`~midivae.evaluate.embedding.Embedding` or a bare callable
``embed(phrases bool (n, 4, 48, 84, 5)) -> float32 (n, d)`` with ``distance`` "euclidean" or
"cosine". ``songs`` is a list of :class:`~midivae.evaluate.data.SongPhrases` (or ``(id, phrases)``
pairs). Every ranking metric counts ties in expectation (see :mod:`midivae.evaluate.metrics`).
Each function returns a flat dict of floats and counts, ready for ``metrics.json``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten, pick
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding, embed_batches, embed_phrases
from midivae.evaluate.metrics import (
    Prepared,
    first_relevant_metrics,
    group_min,
    pairwise,
    prepare,
    rank_of_target,
    summarise,
    take,
    tie_tolerance,
)

QUERY_CHUNK = 256
ORIGINAL_PROTOCOL_SONGS = 1086


def embed_flat(emb: Embedding, flat: Flat, rows: np.ndarray | None = None, batch: int = 256):
    """Embed the phrases of a :class:`Flat` (optionally a subset of its rows), batch by batch."""
    return embed_batches(emb, flat.batches(rows, batch))


def _song_ranks(
    queries: Prepared,
    index: Prepared,
    starts: np.ndarray,
    target_song: np.ndarray,
    target_row: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Song-level (min over a song's phrases) and, optionally, phrase-level ranks of the targets.

    ``starts`` are the first index rows of each song group (index rows sorted by song);
    ``target_song`` is the group position of each query's song, ``target_row`` the index row of
    the phrase it should find.
    """
    song_stats, row_stats = [], []
    for i in range(0, len(queries), QUERY_CHUNK):
        q = take(queries, np.arange(i, min(i + QUERY_CHUNK, len(queries))))
        d = pairwise(q, index)
        tol = tie_tolerance(q, index)
        song_stats.append(rank_of_target(group_min(d, starts), target_song[i : i + QUERY_CHUNK], tol))
        if target_row is not None:
            row_stats.append(rank_of_target(d, target_row[i : i + QUERY_CHUNK], tol))
    out = {"song": _concat(song_stats)}
    if target_row is not None:
        out["phrase"] = _concat(row_stats)
    return out


def _concat(stats):
    from midivae.evaluate.metrics import RankStats

    if not stats:
        return RankStats(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return RankStats(np.concatenate([s.closer for s in stats]), np.concatenate([s.tied for s in stats]))


def _hits(stats, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}hit@{k}": float(np.mean(stats.hit(k))) if len(stats.closer) else float("nan") for k in ks}
    out[f"{prefix}mrr"] = float(np.mean(stats.reciprocal_rank())) if len(stats.closer) else float("nan")
    return out


# --------------------------------------------------------------------------- task 1


def original_protocol(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    max_songs: int | None = ORIGINAL_PROTOCOL_SONGS,
    seed: int = 0,
) -> dict[str, float]:
    """The original work's protocol: two sampled encodings of each song's first phrase.

    Each song's first non-empty phrase is encoded twice (z = mu + sigma * eps for a VAE; a
    deterministic embedding gives the same vector twice); for each song, the first encoding
    queries all second encodings. Top-1: its own second encoding is the nearest; MRR of it.
    """
    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    songs = pick(songs, max_songs, seed)
    if len(songs) < 2:
        raise ValueError("the original protocol needs at least 2 songs")
    first = np.stack([s.phrases[0] for s in songs])
    rng = np.random.default_rng(seed)
    z1 = prepare(emb.encode_sampled(first, rng), emb.distance)
    z2 = prepare(emb.encode_sampled(first, rng), emb.distance)
    d = pairwise(z1, z2)
    stats = rank_of_target(d, np.arange(len(songs)), tie_tolerance(z1, z2))
    out = _hits(stats, (1,))
    return {"top1": out["hit@1"], "mrr": out["mrr"], "n_songs": len(songs), "chance_top1": 1.0 / len(songs)}


# --------------------------------------------------------------------------- task 2


def excerpt_split(flat: Flat, n_songs: int) -> tuple[np.ndarray, np.ndarray]:
    """Index rows = the first half (n // 2) of each song's phrases, query rows = the rest.

    Songs with fewer than 2 phrases take no part.
    """
    index_rows, query_rows = [], []
    ends = np.append(flat.starts[1:], len(flat))
    for s in range(n_songs):
        a, b = int(flat.starts[s]), int(ends[s])
        n = b - a
        if n < 2:
            continue
        index_rows.append(np.arange(a, a + n // 2))
        query_rows.append(np.arange(a + n // 2, b))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
    return cat(index_rows), cat(query_rows)


def excerpt_retrieval(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    ks: Sequence[int] = (1, 10),
    vectors=None,
) -> dict[str, float]:
    """Index the first half of each song's phrases, query with each phrase of its second half.

    A song's distance to a query is the minimum over its indexed phrases. Hit@k and MRR of the
    query's own song. ``vectors``: precomputed embeddings of all phrases of ``songs`` in order
    (saves re-embedding when several tasks share them).
    """
    emb = as_embedding(embed, distance)
    songs = as_songs(songs)
    flat = flatten(songs)
    index_rows, query_rows = excerpt_split(flat, len(songs))
    if not len(query_rows):
        raise ValueError("excerpt retrieval needs songs with at least 2 phrases")
    if vectors is None:
        all_rows = np.concatenate([index_rows, query_rows])
        v = embed_flat(emb, flat, all_rows)
        xi, xq = v[: len(index_rows)], v[len(index_rows) :]
    else:
        xi, xq = vectors[index_rows], vectors[query_rows]
    index = prepare(xi, emb.distance)
    queries = prepare(xq, emb.distance)
    index_song = flat.song[index_rows]
    groups, starts = np.unique(index_song, return_index=True)
    position = np.full(len(songs), -1, dtype=np.int64)
    position[groups] = np.arange(len(groups))
    target = position[flat.song[query_rows]]
    stats = _song_ranks(queries, index, starts, target)["song"]
    out = _hits(stats, ks)
    out.update(n_songs=int(len(groups)), n_index=int(len(index_rows)), n_queries=int(len(query_rows)),
               chance_hit1=1.0 / len(groups))
    return out
