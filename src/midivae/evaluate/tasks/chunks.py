"""Helpers the ranking tasks share: query rows a chunk (:func:`query_chunk`), embedding a
:class:`~midivae.evaluate.data.Flat` batch by batch, song- and phrase-level ranks a chunk at a time,
and their Hit@k / MRR summary."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from midivae.evaluate.data import Flat
from midivae.evaluate.embedding import Embedding, embed_batches
from midivae.evaluate.metrics import (
    Prepared,
    RankStats,
    group_min,
    pairwise,
    rank_of_target,
    summarise,
    take,
    tie_tolerance,
)
from midivae.evaluate.parallel import map_chunks, progress_bar
from midivae.verify import PhraseNotes, verify_in_place

QUERY_CHUNK = 256
#: cells (query rows x collection phrases) of one chunk's distance matrix: 2**23, 64 MB in float64.
#: Up to 32,768 phrases a chunk holds QUERY_CHUNK queries, beyond that fewer, so what a chunk holds
#: (several such matrices, in each thread) stays bounded on a large collection.
CHUNK_CELLS = 1 << 23


def query_chunk(n_columns: int) -> int:
    """Query rows per chunk against ``n_columns`` phrases (see :data:`CHUNK_CELLS`)."""
    return min(QUERY_CHUNK, max(16, CHUNK_CELLS // max(1, n_columns)))


def embed_flat(emb: Embedding, flat: Flat, rows: np.ndarray | None = None, batch: int = 256):
    """Embed the phrases of a :class:`Flat` (optionally a subset of its rows), batch by batch
    (a progress bar under the current :func:`~midivae.evaluate.parallel.progress` label)."""
    rows = np.arange(len(flat)) if rows is None else np.asarray(rows)
    tempi = (flat.tempo[rows[i : i + batch]] for i in range(0, len(rows), batch))
    with progress_bar(len(rows), shown=len(rows) > 4 * batch, unit="phrase") as bar:
        return embed_batches(emb, _counted_batches(zip(flat.batches(rows, batch), tempi), bar))


def all_notes(flat: Flat, batch: int = 256) -> PhraseNotes:
    """The notes of every phrase of a :class:`Flat`, a batch at a time."""
    return PhraseNotes.concat([PhraseNotes.from_phrases(b) for b in flat.batches(np.arange(len(flat)), batch)])


def flat_notes(emb: Embedding, flat: Flat, notes: PhraseNotes | None = None) -> PhraseNotes | None:
    """The notes of every phrase of a :class:`Flat` where ``emb`` verifies its search (else None):
    ``notes`` where the caller read them already (:func:`all_notes` of the same phrases, as
    ``vectors`` are passed to the tasks), else read here."""
    if emb.verify is None:
        return None
    return notes if notes is not None else all_notes(flat)


def verify_chunk(emb: Embedding, d: np.ndarray, query_notes: PhraseNotes | None,
                 index_notes: PhraseNotes | None) -> int:
    """``d`` (a chunk's queries x the index) after the exact verify ``emb``'s search runs, in place
    (nothing where it runs none); returns how many queries it re-ordered."""
    if emb.verify is None or query_notes is None or index_notes is None:
        return 0
    return verify_in_place(d, query_notes, index_notes, emb.verify)


def _counted_batches(batches: Iterable[tuple[np.ndarray, np.ndarray]], bar) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for b in batches:
        yield b
        bar.update(len(b[0]))  # once the batch is embedded


def _song_ranks(
    queries: Prepared,
    index: Prepared,
    starts: np.ndarray,
    target_song: np.ndarray,
    target_row: np.ndarray | None = None,
    verify: tuple[Embedding, PhraseNotes, PhraseNotes] | None = None,
) -> dict[str, np.ndarray]:
    """Song-level (min over a song's phrases) and, optionally, phrase-level ranks of the targets.

    ``starts`` are the first index rows of each song group (index rows sorted by song);
    ``target_song`` is the group position of each query's song, ``target_row`` the index row of
    the phrase it should find. ``verify``: (embedding, the queries' notes, the index's notes), the
    exact verify the embedding's search runs (:func:`verify_chunk`).
    """

    def ranks(at: np.ndarray) -> tuple[RankStats, RankStats | None]:
        q = take(queries, at)
        d = pairwise(q, index)
        if verify is not None:
            emb, query_notes, index_notes = verify
            verify_chunk(emb, d, query_notes.take(at), index_notes)
        tol = tie_tolerance(q, index)
        song = rank_of_target(group_min(d, starts), target_song[at], tol)
        return song, (rank_of_target(d, target_row[at], tol) if target_row is not None else None)

    stats = map_chunks(ranks, len(queries), query_chunk(len(index)))
    out = {"song": _concat([s for s, _ in stats])}
    if target_row is not None:
        out["phrase"] = _concat([r for _, r in stats])
    return out


def _concat(stats):
    if not stats:
        return RankStats(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return RankStats(np.concatenate([s.closer for s in stats]), np.concatenate([s.tied for s in stats]))


def _hits(stats, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """Hit@k and MRR of rank statistics, summarised as every ranking task's (:func:`summarise`)."""
    per_query = {f"hit@{k}": stats.hit(k) for k in ks}
    per_query["rr"] = stats.reciprocal_rank()
    return {prefix + key: v for key, v in summarise(per_query).items()}
