"""Task 2: excerpt retrieval, the first half of each song's phrases indexed, the second half queried."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding
from midivae.evaluate.tasks.chunks import _hits, _song_ranks, embed_flat, flat_notes

#: Beyond this many query phrases (~3,000 LPD-5 songs) the task queries a seeded sample of them,
#: the same for every method. Each query is compared with every indexed phrase, so the task's
#: cost grows with the square of the collection (the raw baselines' excerpt took ~4 min each at
#: 107,356 phrases and would take ~30 at 300,000); a sample of 20,000 queries estimates Hit@1
#: and MRR within +-0.005 (95%) and keeps the task linear.
EXCERPT_QUERIES = 20_000


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


def sample_queries(query_rows: np.ndarray, max_queries: int | None, seed: int) -> np.ndarray:
    """At most ``max_queries`` of ``query_rows`` (None: all), a sorted seeded sample: the same
    rows for every method of a run."""
    if max_queries is None or len(query_rows) <= max_queries:
        return query_rows
    rng = np.random.default_rng([seed, 0xE8C])
    return np.sort(rng.choice(query_rows, size=max_queries, replace=False))


def excerpt_retrieval(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    ks: Sequence[int] = (1, 10),
    vectors=None,
    notes=None,
    max_queries: int | None = EXCERPT_QUERIES,
    seed: int = 0,
) -> dict[str, float]:
    """Index the first half of each song's phrases, query with each phrase of its second half
    (beyond ``max_queries`` of them, a seeded sample: :data:`EXCERPT_QUERIES`).

    A song's distance to a query is the minimum over its indexed phrases. Hit@k and MRR of the
    query's own song. ``vectors``: precomputed embeddings of all phrases of ``songs`` in order
    (saves re-embedding when several tasks share them); ``notes``: likewise their notes, which a
    verified search reads (:func:`~midivae.evaluate.tasks.chunks.all_notes`).
    """
    emb = as_embedding(embed, distance)
    songs = as_songs(songs)
    flat = flatten(songs)
    index_rows, query_rows = excerpt_split(flat, len(songs))
    if not len(query_rows):
        raise ValueError("excerpt retrieval needs songs with at least 2 phrases")
    n_query_phrases = len(query_rows)
    query_rows = sample_queries(query_rows, max_queries, seed)
    if vectors is None:
        all_rows = np.concatenate([index_rows, query_rows])
        v = embed_flat(emb, flat, all_rows)
        xi, xq = v[: len(index_rows)], v[len(index_rows) :]
    else:
        xi, xq = vectors[index_rows], vectors[query_rows]
    index, queries = emb.prepare(xi), emb.prepare(xq)
    del xi, xq  # a cosine method's unit rows are new values: the originals' go
    index_song = flat.song[index_rows]
    groups, starts = np.unique(index_song, return_index=True)
    position = np.full(len(songs), -1, dtype=np.int64)
    position[groups] = np.arange(len(groups))
    target = position[flat.song[query_rows]]
    notes = flat_notes(emb, flat, notes)  # the exact verify, where the search runs it
    verify = (emb, notes.take(query_rows), notes.take(index_rows)) if notes is not None else None
    stats = _song_ranks(queries, index, starts, target, verify=verify)["song"]
    out = _hits(stats, ks)
    out.update(n_songs=int(len(groups)), n_index=int(len(index_rows)), n_queries=int(len(query_rows)),
               n_query_phrases=int(n_query_phrases), chance_hit1=1.0 / len(groups))
    return out
