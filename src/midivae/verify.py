"""The exact verify: a search's near-tied first candidates re-ordered by their notes.

A compact search vector cannot order phrases that differ by a note held one step longer: in a long
song such near-repeats read within 0.001 of each other, and an altered query (notes dropped,
shifted an eighth) then finds a near-repeat of its phrase first as often as the phrase itself
(docs/model_selection.md, "An exact verify of near-tied candidates"). The notes tell them apart.

Per query phrase, the search's first ``candidates`` phrases that lie within ``margin`` of its best
distance are re-ordered by how many of the query's notes each holds at its best time offset
(within ``max_offset`` steps): a Tversky score, each query note it misses weighing 1 and each of
its own extra notes ``beta`` (so a note drop, which only removes, keeps the original on top, and a
denser near-repeat does not win by holding more). Equal scores keep the search's order, and a
row where no candidate scores ``min_score`` keeps it too (the notes confirm none of them: a query
in another key than its original, searched without --any-key). The re-order is written back as
distances: the near-tied candidates' distances, sorted, are handed out again in the verify's
order (each one whose score differs from the one before it at least :data:`STEP` after it), so
song scores move by at most the margin and a tie the notes cannot break stays a tie.

Notes are read in a view of the phrase with the drums as they are and the pitched tracks merged
into one (a part moved to another instrument still matches): a note is a run of on-cells in one
column, kept as (onset, column, length), 3 bytes in an index (:meth:`PhraseNotes.to_blobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from midivae.constants import DRUMS, N_PITCHES, PITCHED_TRACKS, STEPS_PER_PHRASE

#: columns of the merged view: the drum pitches, then the pitched tracks' pitches merged
N_COLUMNS = 2 * N_PITCHES
#: a note's code, (column x 256 + length) x ONSET_BASE + onset: equal keys, onsets apart by their difference
ONSET_BASE = 256
_PAIR_BLOCK = N_COLUMNS * 256 * ONSET_BASE  # a pair's block of codes in a join of several pairs
#: how far apart two re-ordered candidates' distances are put when the notes tell them apart (above
#: the evaluation's tie tolerance, far below the margin)
STEP = 1e-4


@dataclass(frozen=True)
class VerifyConfig:
    """The verify's settings, chosen on the validation split (docs/model_selection.md)."""

    candidates: int = 5
    margin: float = 0.03
    beta: float = 0.1
    #: steps (a quarter note: 12); validation read the same at 24 with twice the pairs to join
    max_offset: int = 12
    #: a row is re-ordered only where some candidate's score reaches this: notes that confirm no
    #: candidate (a query in another key, searched without --any-key) leave the search's order
    #: (validation: 0.5 still lost transposed queries' phrase Hit@1, 0.9 began to lose shifts)
    min_score: float = 0.7


DEFAULT_VERIFY = VerifyConfig()


@dataclass(frozen=True)
class PhraseNotes:
    """The notes of ``n`` phrases, ragged: phrase ``i``'s notes are rows ``starts[i]:starts[i + 1]``."""

    onsets: np.ndarray  # int16 (total,)
    columns: np.ndarray  # int16 (total,), see N_COLUMNS
    lengths: np.ndarray  # int16 (total,), steps >= 1
    starts: np.ndarray  # int64 (n + 1,)

    def __len__(self) -> int:
        return len(self.starts) - 1

    @cached_property
    def codes(self) -> np.ndarray:
        """Each note as one int32: (column x 256 + length) x ONSET_BASE + onset."""
        key = self.columns.astype(np.int32) * 256 + self.lengths
        return key * ONSET_BASE + self.onsets  # below 2**24: int32 (a join of several pairs adds int64 blocks)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def windows(self, reach: int) -> np.ndarray:
        """``(n, 2 reach + 1)``: how many of each phrase's notes stay inside it when delayed by each
        offset from -reach to +reach (computed once per reach: a search reads it for every candidate)."""
        cache = self.__dict__.setdefault("_windows", {})
        if reach not in cache:
            n, steps = len(self), STEPS_PER_PHRASE + 1
            phrase = np.repeat(np.arange(n, dtype=np.int64), self.counts)
            cum = np.bincount(phrase * steps + self.onsets + 1, minlength=n * steps).reshape(n, steps).cumsum(axis=1)
            offsets = np.arange(-reach, reach + 1)
            start, end = np.maximum(0, -offsets), np.minimum(STEPS_PER_PHRASE, STEPS_PER_PHRASE - offsets)
            cache[reach] = (cum[:, end] - cum[:, start]).astype(np.int32)
        return cache[reach]

    @classmethod
    def empty(cls, n: int = 0) -> PhraseNotes:
        z = np.zeros(0, np.int16)
        return cls(z, z, z, np.zeros(n + 1, np.int64))

    @classmethod
    def from_phrases(cls, phrases: np.ndarray, batch: int = 256) -> PhraseNotes:
        """The notes of phrases ``bool (n, *PHRASE_SHAPE)`` (vectorised a batch at a time)."""
        phrases = np.asarray(phrases)
        n = len(phrases)
        return cls.concat([_notes_of_batch(phrases[a : a + batch]) for a in range(0, n, batch)])

    @classmethod
    def concat(cls, parts: list[PhraseNotes]) -> PhraseNotes:
        if not parts:
            return cls.empty()
        counts = np.concatenate([p.counts for p in parts])
        return cls(np.concatenate([p.onsets for p in parts]), np.concatenate([p.columns for p in parts]),
                   np.concatenate([p.lengths for p in parts]), _starts(counts))

    def take(self, rows: np.ndarray) -> PhraseNotes:
        rows = np.asarray(rows, dtype=np.int64)
        idx, counts = _ragged(self.starts, rows)
        return PhraseNotes(self.onsets[idx], self.columns[idx], self.lengths[idx],
                           _starts(counts))

    def to_blobs(self) -> list[bytes]:
        """One ``bytes`` per phrase: (onset, column, length) per note, one byte each."""
        packed = np.stack([self.onsets, self.columns, np.minimum(self.lengths, 255)], axis=1).astype(np.uint8)
        return [packed[a:b].tobytes() for a, b in zip(self.starts[:-1].tolist(), self.starts[1:].tolist())]

    @classmethod
    def from_blobs(cls, blobs: list[bytes]) -> PhraseNotes:
        counts = np.array([len(b) // 3 for b in blobs], dtype=np.int64)
        flat = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, 3).astype(np.int16)
        return cls(flat[:, 0].copy(), flat[:, 1].copy(), flat[:, 2].copy(), _starts(counts))


def _notes_of_batch(phrases: np.ndarray) -> PhraseNotes:
    n, width = len(phrases), STEPS_PER_PHRASE + 2
    x = np.asarray(phrases, dtype=bool).reshape(n, STEPS_PER_PHRASE, N_PITCHES, -1).view(np.uint8)
    by_track = np.ascontiguousarray(x.transpose(0, 3, 2, 1))  # (n, tracks, pitches, time)
    padded = np.zeros((n, N_COLUMNS, width), dtype=np.int8)  # a silent step before and after each column
    padded[:, :N_PITCHES, 1:-1] = by_track[:, DRUMS]
    padded[:, N_PITCHES:, 1:-1] = by_track[:, list(PITCHED_TRACKS)].any(axis=1)
    flat = padded.ravel()
    onset = np.flatnonzero(flat[1:] > flat[:-1]) + 1  # a note's first step, as a position in ``flat``
    end = np.flatnonzero(flat[1:] < flat[:-1]) + 1  # one step past its last (in the same order)
    row, start = np.divmod(onset, width)
    phrase, column = np.divmod(row, N_COLUMNS)
    counts = np.bincount(phrase, minlength=n)
    return PhraseNotes((start - 1).astype(np.int16), column.astype(np.int16), (end - onset).astype(np.int16),
                       _starts(counts))


def _starts(counts: np.ndarray) -> np.ndarray:
    """A ragged array's row starts (and its length last) from its row counts."""
    return np.r_[0, np.cumsum(counts)].astype(np.int64)


def _ragged(starts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element indices of ``rows`` of a ragged array (in row order) and each row's count."""
    first, counts = starts[rows], starts[rows + 1] - starts[rows]
    idx = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return idx.astype(np.int64), counts


def note_scores(queries: PhraseNotes, query_rows: np.ndarray, candidates: PhraseNotes, candidate_rows: np.ndarray,
                config: VerifyConfig = DEFAULT_VERIFY) -> np.ndarray:
    """Tversky score of each pair (``queries[query_rows[p]]``, ``candidates[candidate_rows[p]]``) at
    its best time offset, in one vectorised join over all pairs: the share of the query's notes
    (same column, same length) the candidate holds, shifted by at most ``max_offset`` steps, with
    the candidate's extra notes (those inside the phrase at that offset) weighing ``beta``."""
    n_pairs = len(query_rows)
    if n_pairs == 0:
        return np.zeros(0)
    rows = np.asarray(candidate_rows, dtype=np.int64)
    q_idx, q_counts = _ragged(queries.starts, np.asarray(query_rows, dtype=np.int64))
    q_codes = np.sort(queries.codes[q_idx] + np.repeat(np.arange(n_pairs, dtype=np.int64) * _PAIR_BLOCK, q_counts))
    c_idx, c_counts = _ragged(candidates.starts, rows)
    c_pair = np.repeat(np.arange(n_pairs, dtype=np.int64), c_counts)
    overlap = _overlap(q_codes, candidates.codes[c_idx] + c_pair * _PAIR_BLOCK, c_pair, n_pairs, config.max_offset)
    return _tversky(overlap, q_counts[:, None], candidates.windows(config.max_offset)[rows], config.beta)


def query_codes(notes: PhraseNotes, row: int) -> np.ndarray:
    """One phrase's note codes, sorted: what :func:`note_scores_one` reads of a query."""
    return np.sort(notes.codes[notes.starts[row] : notes.starts[row + 1]])


def note_scores_one(codes: np.ndarray, candidates: PhraseNotes, candidate_rows: np.ndarray,
                    config: VerifyConfig = DEFAULT_VERIFY) -> np.ndarray:
    """:func:`note_scores` of one query (its :func:`query_codes`) against a few candidates: their
    notes taken as slices, one query's codes for every pair (what one search runs)."""
    rows = np.asarray(candidate_rows, dtype=np.int64)
    bounds = [(int(candidates.starts[r]), int(candidates.starts[r + 1])) for r in rows.tolist()]
    c_codes = np.concatenate([candidates.codes[a:b] for a, b in bounds])
    c_pair = np.repeat(np.arange(len(rows)), [b - a for a, b in bounds])
    overlap = _overlap(codes, c_codes, c_pair, len(rows), config.max_offset)
    return _tversky(overlap, len(codes), candidates.windows(config.max_offset)[rows], config.beta)


def _overlap(q_codes: np.ndarray, c_codes: np.ndarray, c_pair: np.ndarray, n_pairs: int, reach: int) -> np.ndarray:
    """``(n_pairs, 2 reach + 1)``: per pair and offset, the query notes the candidate holds. A
    query note and a candidate note of one key whose onsets lie within ``reach`` are two codes that
    close (``q_codes`` sorted; an onset stays below ONSET_BASE, so a window never reaches another
    key's codes, nor another pair's block), so one ``searchsorted`` window per candidate note finds
    every such pair, and nothing else."""
    width, n_c = 2 * reach + 1, len(c_codes)
    # each window's first and one-past-last query code, in one search (integer codes: "right" of
    # code + reach is "left" of code + reach + 1)
    bounds = np.searchsorted(q_codes, np.concatenate([c_codes - reach, c_codes + (reach + 1)]))
    lo = bounds[:n_c]
    n = bounds[n_c:] - lo
    c_of = np.repeat(np.arange(n_c), n)
    q_of = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(c_of.size)
    cell = c_pair[c_of] * width + (q_codes[q_of] - c_codes[c_of] + reach)
    return np.bincount(cell, minlength=n_pairs * width).reshape(n_pairs, width)


def _tversky(overlap: np.ndarray, n_query, window: np.ndarray, beta: float) -> np.ndarray:
    """Each pair's best score over the offsets: held / (query notes + beta x the candidate's extra)."""
    return (overlap / (n_query + beta * (window - overlap) + 1e-9)).max(axis=1)


def nearest(d: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``m`` smallest distances and their columns, ascending (equal distances by column)."""
    m = min(m, d.shape[1])
    if m == 0:
        return np.zeros((len(d), 0), np.int64), np.zeros((len(d), 0), d.dtype)
    cols = np.argpartition(d, m - 1, axis=1)[:, :m] if m < d.shape[1] else np.broadcast_to(np.arange(m), d.shape).copy()
    dists = np.take_along_axis(d, cols, axis=1)
    order = np.lexsort((cols, dists), axis=1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(dists, order, axis=1)


def near_ties(dists: np.ndarray, margin: float) -> np.ndarray:
    """Of ascending rows of distances, the entries within ``margin`` of the row's first, in rows
    where there are at least two (elsewhere there is nothing to re-order); an infinite distance (a
    column set aside) is never near."""
    near = (dists <= dists[:, :1] + margin) & np.isfinite(dists)
    if near.shape[1] > 1:
        near &= near[:, 1:2]
    else:
        near[:] = False
    return near


def reorder(dists: np.ndarray, near: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """New distances for ascending rows ``dists`` whose ``near`` entries (a leading run) are
    re-ordered by ``scores``, highest first, equal scores in the given order (see the module
    docstring). Entries outside ``near`` keep their distances."""
    out = np.array(dists, dtype=np.float64, copy=True)
    rows = np.nonzero(near[:, 0])[0] if near.shape[1] else np.zeros(0, np.int64)
    if rows.size == 0:
        return out
    d, s = out[rows], np.where(near[rows], scores[rows], -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    s_new = np.take_along_axis(s, order, axis=1)
    new = d.copy()  # position j of the new order gets the j-th smallest distance ...
    for j in range(1, d.shape[1]):  # ... or STEP past the one before it where the notes differ
        inside = near[rows, j]
        bumped = np.where(s_new[:, j] != s_new[:, j - 1], new[:, j - 1] + STEP, new[:, j - 1])
        new[:, j] = np.where(inside, np.maximum(d[:, j], bumped), d[:, j])
    placed = np.empty_like(new)
    np.put_along_axis(placed, order, new, axis=1)
    out[rows] = placed
    return out


def verified(dists: np.ndarray, cols: np.ndarray, queries: PhraseNotes, candidates: PhraseNotes,
             config: VerifyConfig = DEFAULT_VERIFY) -> tuple[np.ndarray, int]:
    """New distances of each row's first candidates (``dists`` ascending per row, ``cols`` rows of
    ``candidates``; row ``i`` is the query ``queries[i]``) and how many rows it re-ordered (a near
    tie, and a candidate scoring ``min_score``)."""
    near = near_ties(dists, config.margin)
    r, c = np.nonzero(near)
    if r.size == 0:
        return np.asarray(dists, dtype=np.float64), 0
    scores = np.full(near.shape, -np.inf)
    scores[r, c] = note_scores(queries, r, candidates, cols[r, c], config)
    near &= scores.max(axis=1, keepdims=True) >= config.min_score
    return reorder(dists, near, scores), int(near[:, 0].sum())


def reorder_one(ranked: np.ndarray, dist: np.ndarray, codes: np.ndarray, candidates: PhraseNotes,
                config: VerifyConfig = DEFAULT_VERIFY) -> np.ndarray:
    """One query's candidates (rows of ``candidates``, nearest first, at ``dist``) in the order
    :func:`verified` gives them (its distances aside): the near-tied first ones by their scores,
    highest first, equal scores in the given order, nothing moved below ``min_score``. Read from a
    few Python numbers, no matrix: what one search's verify costs (``codes``: :func:`query_codes`)."""
    first = dist[: config.candidates].tolist()
    n_near = sum(d <= first[0] + config.margin for d in first)
    if n_near < 2:
        return ranked
    scores = note_scores_one(codes, candidates, ranked[:n_near], config).tolist()
    if max(scores) < config.min_score:
        return ranked
    head = sorted(range(n_near), key=lambda j: -scores[j])
    out = ranked.copy()
    out[:n_near] = ranked[head]
    return out


def verify_in_place(d: np.ndarray, queries: PhraseNotes, columns: PhraseNotes,
                    config: VerifyConfig = DEFAULT_VERIFY) -> int:
    """Apply the verify to a whole distance matrix ``d`` (queries x ``columns``) in place; returns
    how many rows it re-ordered (see :func:`verified`)."""
    cols, dists = nearest(d, config.candidates)
    new, n = verified(dists, cols, queries, columns, config)
    if n:
        np.put_along_axis(d, cols, new.astype(d.dtype), axis=1)
    return n
