"""The evaluation tasks, one function each, every one taking an embedding function.

``embed`` is an :class:`~midivae.evaluate.embedding.Embedding` or a bare callable
``embed(phrases bool (n, 4, 48, 84, 5)) -> float32 (n, d)`` with ``distance`` "euclidean" or
"cosine". ``songs`` is a list of :class:`~midivae.evaluate.data.SongPhrases` (or ``(id, phrases)``
pairs). Every ranking metric counts ties in expectation (see :mod:`midivae.evaluate.metrics`).
Each function returns a flat dict of floats and counts, ready for ``metrics.json``.

One module per task, every name re-exported here (``tasks.robustness``, ``tasks.QUERY_CHUNK``):

- :mod:`.chunks`: the helpers the ranking tasks share (query chunks, :func:`embed_flat`, ranks, Hit@k)
- :mod:`.protocol`: task 1, :func:`original_protocol`
- :mod:`.excerpt`: task 2, :func:`excerpt_retrieval`
- :mod:`.altered`: task 3, :func:`robustness` and its :func:`altered_queries`
- :mod:`.genre`: task 4, :func:`genre_consistency`
- :mod:`.reconstruct`: task 5, :func:`reconstruction`
- :mod:`.identification`: task 6, :func:`version_identification`
- :mod:`.timing`: task 7, :func:`cost`

A setting is read from the module that defines it: to change one (as the tests do), set it there,
e.g. ``tasks.chunks.QUERY_CHUNK`` or ``tasks.timing.TIMING_MIN_SECONDS``.
"""

from __future__ import annotations

from midivae.evaluate.data import flatten, unpack
from midivae.evaluate.tasks.altered import (
    ANY_KEY_QUERIES,
    NEAR_COPY_SHARE,
    SONG_LENGTH_GROUPS,
    AlteredQueries,
    _duplicate_mask_pairs,
    _previous_rows,
    _row_hashes,
    altered_queries,
    differing_cells,
    nearest_others,
    robustness,
    self_ranks,
    song_length_label,
)
from midivae.evaluate.tasks.chunks import (
    CHUNK_CELLS,
    QUERY_CHUNK,
    _concat,
    _counted_batches,
    _hits,
    _song_ranks,
    all_notes,
    embed_flat,
    flat_notes,
    query_chunk,
)
from midivae.evaluate.tasks.excerpt import EXCERPT_QUERIES, excerpt_retrieval, excerpt_split, sample_queries
from midivae.evaluate.tasks.genre import genre_consistency, song_vectors
from midivae.evaluate.tasks.identification import other_version_ranks, query_mean, version_identification
from midivae.evaluate.tasks.protocol import ORIGINAL_PROTOCOL_SONGS, _sampled_in_chunks, original_protocol
from midivae.evaluate.tasks.reconstruct import model_thresholds, reconstruction
from midivae.evaluate.tasks.timing import (
    DENSE_SAMPLE_ROWS,
    PAIRED_DENSE_QUERIES,
    PAIRED_ROUNDS,
    QUERY_K,
    TIMING_MAX_PASSES,
    TIMING_MIN_SECONDS,
    TIMING_REPEATS,
    ExactScan,
    PrefixBoundScan,
    _fastest_layout,
    _scan_ms,
    _seconds_per_call,
    cost,
    dense_scan_ms,
    paired_query_ms,
    query_seconds,
    raw_dense_rows,
    select_top,
    two_stage_top_k,
)

__all__ = [
    # chunks
    "QUERY_CHUNK", "CHUNK_CELLS", "query_chunk", "embed_flat", "all_notes", "flat_notes",
    # protocol (task 1)
    "ORIGINAL_PROTOCOL_SONGS", "original_protocol",
    # excerpt (task 2)
    "EXCERPT_QUERIES", "excerpt_split", "excerpt_retrieval", "sample_queries",
    # altered (task 3)
    "ANY_KEY_QUERIES", "SONG_LENGTH_GROUPS", "NEAR_COPY_SHARE", "song_length_label", "AlteredQueries", "altered_queries",
    "robustness", "self_ranks", "nearest_others", "differing_cells",
    # genre (task 4)
    "song_vectors", "genre_consistency",
    # reconstruct (task 5)
    "model_thresholds", "reconstruction",
    # identification (task 6)
    "version_identification", "other_version_ranks", "query_mean",
    # timing (task 7)
    "QUERY_K", "DENSE_SAMPLE_ROWS", "TIMING_REPEATS", "TIMING_MIN_SECONDS", "TIMING_MAX_PASSES", "PAIRED_ROUNDS",
    "PAIRED_DENSE_QUERIES", "select_top", "ExactScan", "PrefixBoundScan", "two_stage_top_k", "dense_scan_ms", "raw_dense_rows",
    "paired_query_ms", "query_seconds", "cost",
]
# also reached as tasks.<name> by the tests and scripts, as when the tasks were one module: the
# private helpers, and the data helpers it imported
__all__ += [
    "_counted_batches", "_song_ranks", "_concat", "_hits", "_sampled_in_chunks", "_previous_rows", "_row_hashes",
    "_duplicate_mask_pairs", "_seconds_per_call", "_fastest_layout", "_scan_ms", "flatten", "unpack",
]
