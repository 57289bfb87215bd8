"""From a query (a MIDI / LPD file or a song id in the index) to a ranked list of songs.

Ranking rule (default ``mean``): a song's distance to the query is the mean, over the query's
phrases, of the distance to the song's nearest phrase — it rewards songs that match the whole
query. ``nearest`` (the best phrase pair: the smallest distance between any query phrase and any
phrase of the song) is kept as an option. Chosen by measurement on the excerpt task with
whole-half queries (800 shared LPD-5 songs; ``benchmarks/search.py``, "song rule" rows): with the
shipped model, song Hit@1 mean 0.978 vs nearest 0.970 (0.939 vs 0.939 on raw pianorolls; the
built-in bar-profile encoder preferred nearest, 0.960 vs 0.943). For a one-phrase query the two
rules are the same.

A query of several phrases is scored without the search head's song part (where the model has
one; ``midivae.search_space``), on both sides: each of its phrases finds its own match, and the
song part, which tells one transcription's phrases from other files, would push other
transcriptions of the same song away. A one-phrase query keeps it (it finds the song of an
excerpt with new material). Candidates still come from the stored coarse vectors.

How: every query phrase retrieves its ``candidates`` nearest phrases from the vector index
(exact or approximate); the songs they belong to are the candidates, and each candidate is then
scored *exactly* against all of its stored phrase vectors, so approximate search only decides
which songs are considered, never their distances. A two-stage index (a model with a search head,
see ``midivae.model.search_head``) retrieves candidates by the short coarse part of the search
vectors (at least its ``shortlist`` nearest phrases per query phrase) and scores them on the whole
vectors (bar order included).

The exact verify (``midivae.verify``, on by default where the index keeps every phrase's notes):
each query phrase's nearest phrases that lie within a small margin of its best are re-ordered by
their notes, which a compact vector cannot tell apart when they differ by a note held a step
longer; the songs of the phrases it moved are scored again with the distances it set.

``any_key``: the query is also encoded in all 12 transpositions of its pitched tracks (shifts
-6..+5 semitones, drums untouched, notes shifted off the 84-pitch range dropped); each song keeps
its best transposition, reported as ``transpose`` (semitones applied to the query).

Which song is excluded: when the query is a song id, that song is left out of the results (you
asked for *other* songs like it). A query file is searched as is; an indexed song with exactly the
same phrase content is reported with ``same_content = True``, so "this file is already in your
collection" shows as a hit at distance 0.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from midivae.constants import PITCHED_TRACKS
from midivae.data.fingerprint import similarity
from midivae.errors import InvalidInputError, NotFoundError, VectorIndexError
from midivae.index.base import Encoder
from midivae.index.encoders import encode_search, search_layout
from midivae.index.faiss_index import normalise
from midivae.index.latent_index import LatentIndex
from midivae.index.sources import content_hash, read_phrases
from midivae.song import Phrases
from midivae.search_space import tempo_term
from midivae.verify import DEFAULT_VERIFY, PhraseNotes, VerifyConfig, near_ties, nearest, verified

RULES: tuple[str, ...] = ("nearest", "mean")
DEFAULT_RULE = "mean"
TRANSPOSITIONS: tuple[int, ...] = tuple(range(-6, 6))


@dataclass(frozen=True)
class Match:
    query_bar: int  # first bar of the query phrase (song bar numbers, 0-based)
    hit_bar: int  # first bar of the hit song's nearest phrase
    distance: float


@dataclass(frozen=True)
class SongHit:
    rank: int
    song_id: str
    title: str
    path: str
    distance: float
    transpose: int
    same_content: bool
    matches: tuple[Match, ...]  # one per query phrase, nearest first


@dataclass(frozen=True)
class SearchResult:
    query: str
    query_kind: str  # "file" or "song"
    n_query_phrases: int
    rule: str
    any_key: bool
    excluded: tuple[str, ...]
    hits: tuple[SongHit, ...]
    #: whether near-tied candidates were re-ordered by their notes (see rank_songs)
    verified: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QueryVectors:
    """Encoded query: ``vectors`` is ``(n_shifts, n_phrases, dim)``."""

    label: str
    kind: str
    vectors: np.ndarray
    shifts: tuple[int, ...]
    bar_offsets: np.ndarray
    content_hash: str = ""
    exclude_song_id: str | None = None
    tempo: float = float("nan")  # the query song's tempo (BPM; NaN: unknown)
    #: the notes of each row of ``vectors`` (shift-major, as the vectors flattened), which the exact
    #: verify reads (None: unknown, no verify)
    notes: PhraseNotes | None = None


def transpose_phrases(phrases: np.ndarray, shift: int) -> np.ndarray:
    """Pitched tracks moved by ``shift`` semitones (zero fill); drums untouched."""
    out = np.array(phrases, dtype=bool, copy=True)
    if shift == 0:
        return out
    tracks = list(PITCHED_TRACKS)
    src = phrases[..., tracks]
    moved = np.zeros_like(src)
    if shift > 0:
        moved[..., shift:, :] = src[..., :-shift, :]
    else:
        moved[..., :shift, :] = src[..., -shift:, :]
    out[..., tracks] = moved
    return out


def encode_query(encoder: Encoder, phrases: Phrases, label: str, kind: str, any_key: bool,
                 exclude_song_id: str | None = None, with_notes: bool = True) -> QueryVectors:
    """The query's search vectors (in every key for ``any_key``), and its notes where the search
    will verify (``with_notes``)."""
    shifts = TRANSPOSITIONS if any_key else (0,)
    batch = np.concatenate([transpose_phrases(phrases.phrases, s) for s in shifts]) if any_key else phrases.phrases
    vectors = encode_search(encoder, batch, tempo=phrases.tempo).reshape(len(shifts), len(phrases), -1)
    return QueryVectors(label, kind, vectors, shifts, np.asarray(phrases.bar_offsets), content_hash(phrases),
                        exclude_song_id, phrases.tempo, PhraseNotes.from_phrases(batch) if with_notes else None)


def parse_bars(text: str | None) -> tuple[int, int] | None:
    """``"A:B"`` -> bars ``[A, B)`` (0-based); ``"A:"`` runs to the end."""
    if not text:
        return None
    try:
        a, b = text.split(":")
        first = int(a) if a else 0
        last = int(b) if b else 2**31
    except ValueError:
        raise InvalidInputError("--bars", f"expected A:B with integers, got {text!r}") from None
    if first < 0 or last <= first:
        raise InvalidInputError("--bars", f"empty or negative bar range {text!r}")
    return first, last


def _song_phrases_from_source(index: LatentIndex, song_id: str) -> Phrases:
    """Re-read an indexed song's phrases (needed to transpose it for --any-key)."""
    record = index.song(song_id)
    if record.source in ("midi", "lpd") and Path(record.path).is_file():
        return read_phrases(record.path)
    if record.source == "store":
        from midivae.index.sources import discover

        for source in discover([record.path]):
            if source.song_id == song_id:
                return source.load()
    raise NotFoundError(f"song {song_id!r}: its source {record.path} is gone, so it cannot be transposed "
                        "(search without --any-key, or query with the file)")


def query_from_song(index: LatentIndex, song_id: str, encoder: Encoder | None, bars: tuple[int, int] | None,
                    any_key: bool, with_notes: bool = True) -> QueryVectors:
    """A song already in the index: its stored vectors (re-encoded from its source for --any-key)."""
    record = index.song(song_id)
    if any_key:
        if encoder is None:
            raise VectorIndexError("--any-key needs the index's encoder")
        phrases = _song_phrases_from_source(index, song_id)
        if bars is not None:
            keep = (phrases.bar_offsets >= bars[0]) & (phrases.bar_offsets < bars[1])
            phrases = Phrases(phrases.phrases[keep], phrases.bar_offsets[keep], phrases.tempo)
        if len(phrases) == 0:
            raise InvalidInputError(song_id, f"no phrase starts in bars {bars[0]}:{bars[1]}")
        return encode_query(encoder, phrases, song_id, "song", True, exclude_song_id=song_id,
                            with_notes=with_notes and index.keeps_notes)
    vids, offsets = index.catalogue.song_phrases(record.song_key)
    if bars is not None:
        keep = (offsets >= bars[0]) & (offsets < bars[1])
        vids, offsets = vids[keep], offsets[keep]
        if vids.size == 0:
            raise InvalidInputError(song_id, f"no phrase starts in bars {bars[0]}:{bars[1]}")
    vectors = index.search_vectors(vids)[None]
    notes = index.phrase_notes(vids) if with_notes and index.keeps_notes else None
    return QueryVectors(song_id, "song", vectors, (0,), offsets, record.content_hash, song_id,
                        float(index.song_tempi([record.song_key])[0]), notes)


def query_from_file(path: str | os.PathLike[str], encoder: Encoder, bars: tuple[int, int] | None,
                    any_key: bool, with_notes: bool = True) -> QueryVectors:
    phrases = read_phrases(path, bars)
    return encode_query(encoder, phrases, str(path), "file", any_key, with_notes=with_notes)


def resolve_query(index: LatentIndex, query: str, encoder_factory, bars: tuple[int, int] | None,
                  any_key: bool, with_notes: bool = True) -> QueryVectors:
    """QUERY is a file if such a file exists, else a song id of the index.

    ``encoder_factory`` is called only when an encoder is needed (a song-id query without
    --any-key needs none), so the model is loaded lazily. ``with_notes``: read the query's notes
    (only a search that verifies needs them).
    """
    if Path(query).is_file():
        encoder = encoder_factory()
        layout = search_layout(encoder)
        index.check_encoder(encoder.checkpoint_id, layout.search_id)
        if index.layout.mean_axes is None and layout.mean_axes is not None:  # an index from before they were kept
            index.layout = replace(index.layout, mean_axes=layout.mean_axes)
        return query_from_file(query, encoder, bars, any_key, with_notes=with_notes and index.keeps_notes)
    if index.catalogue.find(query) is None:
        if Path(query).is_dir():
            raise NotFoundError(f"{query}: a folder; a query is one file (MIDI or LPD .npz) or a song id of {index.path}")
        if Path(query).suffix:
            raise NotFoundError(f"{query}: no such file, and no song with that id in {index.path}")
        raise NotFoundError(f"song id {query!r} is not in {index.path} (and no such file)")
    encoder = None
    if any_key:
        encoder = encoder_factory()
        index.check_encoder(encoder.checkpoint_id, search_layout(encoder).search_id)
    return query_from_song(index, query, encoder, bars, any_key, with_notes)


def pairwise_distances(queries: np.ndarray, stored: np.ndarray, metric: str) -> np.ndarray:
    """Exact distances ``(n_queries, n_stored)`` in the index's metric (only ``VectorIndex.vectors``
    is needed from the backend, so any backend gets the same exact re-ranking)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        return np.maximum(1.0 - normalise(queries) @ normalise(stored).T, 0.0).astype(np.float32)
    sq = (queries**2).sum(1)[:, None] + (stored**2).sum(1)[None, :] - 2.0 * queries @ stored.T
    return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)


def _score_songs(index: LatentIndex, flat: np.ndarray, keys: np.ndarray, n_shifts: int, rule: str,
                 shortlists: np.ndarray | None = None, tempo: float = float("nan"), verified: Verified | None = None):
    """Exact song scores of ``keys`` against every stored phrase of each song (plus, for a query of
    several phrases, the tempo term where the index has one: midivae.search_space.tempo_term).

    Returns ``(score, best_shift, dist, cols, offsets, lengths)``: ``dist`` is ``(rows of flat,
    phrases of the songs)`` with song ``j``'s phrases at ``offsets[j] : offsets[j] + lengths[j]``.
    With fingerprints, ``shortlists`` (vector ids, a row per query row) are the phrases that get
    the fingerprint term: distance + weight x (1 - landmark similarity); the rest + weight.
    ``verified``: the distances the exact verify set (:func:`_verify_candidates`) replace the computed ones.
    """
    table = index.table()
    starts, stops = table.song_ranges(keys)
    lengths = stops - starts
    offsets = np.r_[0, np.cumsum(lengths[:-1])].astype(np.int64)
    cols = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
    query, query_sig = index.split_signatures(flat)
    vids = table.vector_ids[cols]
    # a query of several phrases is scored without the song part, on both sides
    stored = index.layout.query_vectors(index.search_vectors(vids), len(flat) // n_shifts)
    stored, stored_sig = index.split_signatures(stored)
    dist = pairwise_distances(query, stored, index.metric)
    if query_sig is not None and shortlists is not None:
        dist = fingerprint_term(dist, vids, shortlists, query_sig, stored_sig, index.fp_weight)
    if verified is not None:
        verified.apply(dist, vids)
    per_song = np.minimum.reduceat(dist, offsets, axis=1).reshape(n_shifts, -1, keys.size)
    score = per_song.mean(axis=1) if rule == "mean" else per_song.min(axis=1)  # (shifts, songs)
    if index.layout.tempo_weight and len(flat) // n_shifts > 1:  # the song part (and its tempo) left out
        score = score + tempo_term(tempo, index.song_tempi(keys), index.layout.tempo_weight)[None, :].astype(score.dtype)
    best_shift = score.argmin(axis=0)
    return score[best_shift, np.arange(keys.size)], best_shift, dist, cols, offsets, lengths


def _columns_of(vids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` (vector ids, any shape) stands among ``vids`` (distinct): whether
    it is there, and its column (meaningful only where it is)."""
    order = np.argsort(vids, kind="stable")
    pos = np.minimum(np.searchsorted(vids[order], wanted), len(vids) - 1)
    return vids[order][pos] == wanted, order[pos]


def fingerprint_term(dist: np.ndarray, vids: np.ndarray, shortlists: np.ndarray, query_sig: np.ndarray,
                     stored_sig: np.ndarray, weight: float) -> np.ndarray:
    """``dist`` (query rows x phrases ``vids``) plus ``weight`` x (1 - landmark similarity) where the
    phrase is in the row's shortlist, plus ``weight`` elsewhere."""
    found, col = _columns_of(vids, shortlists)
    rows, ranks = np.nonzero((shortlists >= 0) & found)
    cols = col[rows, ranks]
    out = dist + np.float32(weight)
    out[rows, cols] -= (weight * similarity(query_sig[rows], stored_sig[cols])).astype(out.dtype)
    return out


@dataclass(frozen=True)
class Verified:
    """The distances the exact verify set: query row ``rows[i]`` to phrase ``vids[i]`` is ``dists[i]``."""

    rows: np.ndarray
    vids: np.ndarray
    dists: np.ndarray

    def apply(self, dist: np.ndarray, vids: np.ndarray) -> None:
        """Write them into ``dist`` (query rows x phrases ``vids``) where it holds their phrase."""
        there, col = _columns_of(vids, self.vids)
        dist[self.rows[there], col[there]] = self.dists[there]


class _NearestPhrases:
    """Each query row's ``m`` nearest phrases over the songs scored so far (distance, then vector id)."""

    def __init__(self, n_rows: int, m: int) -> None:
        self.m = m
        self.dists = np.zeros((n_rows, 0), np.float32)
        self.vids = np.zeros((n_rows, 0), np.int64)

    def add(self, dist: np.ndarray, vids: np.ndarray) -> None:
        cols, d = nearest(dist, self.m)
        dists = np.concatenate([self.dists, d], axis=1)
        ids = np.concatenate([self.vids, vids[cols]], axis=1)
        keep = np.lexsort((ids, dists), axis=1)[:, : self.m]
        self.dists, self.vids = np.take_along_axis(dists, keep, axis=1), np.take_along_axis(ids, keep, axis=1)


def _verify_candidates(index: LatentIndex, query: QueryVectors, best: _NearestPhrases,
                       config: VerifyConfig) -> Verified | None:
    """The exact verify of each query row's near-tied nearest phrases (midivae.verify); None where
    no row has a near tie or the notes order none differently."""
    near = near_ties(best.dists, config.margin)
    if not near.any():
        return None
    needed = np.unique(best.vids[near])  # only the near-tied phrases' notes are read
    pos = np.minimum(np.searchsorted(needed, best.vids), needed.size - 1)
    new, _ = verified(best.dists, pos, query.notes, index.phrase_notes(needed), config)
    rows, cols = np.nonzero(new != best.dists)
    if rows.size == 0:
        return None
    return Verified(rows, best.vids[rows, cols], new[rows, cols].astype(np.float32))


def index_verifies(index: LatentIndex, verify: VerifyConfig | None) -> bool:
    """Whether a search of ``index`` runs the exact verify: asked, and a cosine index that keeps
    every phrase's notes (an index built before it did searches without)."""
    return verify is not None and index.metric == "cosine" and index.keeps_notes


def verifies(index: LatentIndex, query: QueryVectors, verify: VerifyConfig | None) -> bool:
    """:func:`index_verifies`, for a query whose notes are known."""
    return index_verifies(index, verify) and query.notes is not None


#: candidate songs scored at a time before the early-stop test (at least 4 k)
SCORE_CHUNK = 64


def rank_songs(index: LatentIndex, query: QueryVectors, k: int = 10, rule: str = DEFAULT_RULE,
               candidates: int | None = None, verify: VerifyConfig | None = DEFAULT_VERIFY) -> list[SongHit]:
    """The ``k`` songs nearest to the query under ``rule`` (see the module docstring).

    Candidate songs come from each query vector's ``candidates`` nearest phrases. Their neighbour
    lists give every candidate a lower bound of its score (a song absent from a list is at least
    as far as that list's last entry); candidates are then scored exactly in lower-bound order
    until the k-th exact score is below the next bound, so few songs are scored in full.

    ``verify`` (where :func:`verifies`): each query row's nearest phrases among the scored songs
    that lie within the margin of its best are re-ordered by their notes (midivae.verify), and the
    songs they belong to scored again with the distances it set.
    """
    if rule not in RULES:
        raise VectorIndexError(f"unknown ranking rule {rule!r} (choose from {', '.join(RULES)})")
    n_shifts, n_q, dim = query.vectors.shape
    if n_q == 0 or len(index.phrases) == 0 or k <= 0:
        return []
    flat = index.layout.query_vectors(query.vectors, n_q).reshape(-1, dim)  # several phrases: no song part
    exclude = index.song(query.exclude_song_id).song_key if query.exclude_song_id else -1
    n_songs = len(index.songs) - (exclude >= 0)
    kk = min(len(index.phrases), max(candidates or max(4 * k, 32), index.shortlist))
    coarse = index.coarse(flat)
    while True:  # widen the lists until they name k candidate songs (or hold the whole index)
        dists, vids = index.phrases.search(coarse, kk)
        valid = vids >= 0
        keys = np.full(vids.shape, -1, dtype=np.int64)
        keys[valid] = index.song_keys_of(vids[valid])
        valid &= keys != exclude
        cand = np.unique(keys[valid])
        if cand.size >= min(k, n_songs) or kk >= len(index.phrases):
            break
        kk = min(len(index.phrases), 4 * kk)
    if cand.size == 0:
        return []

    # lower bounds from the lists
    full = (vids >= 0).all(axis=1)
    last = np.where(full, dists[:, -1], np.inf)  # a list that is not full holds the whole index
    bound = np.repeat(last[:, None], cand.size, axis=1)
    rows = np.nonzero(valid)[0]
    np.minimum.at(bound, (rows, np.searchsorted(cand, keys[valid])), dists[valid])
    bound = bound.reshape(n_shifts, n_q, cand.size)
    bound = (bound.mean(axis=1) if rule == "mean" else bound.min(axis=1)).min(axis=0)
    if index.coarse_dims:
        bound[:] = -np.inf  # coarse distances bound nothing on the whole vectors: score every candidate
    best = _NearestPhrases(len(flat), verify.candidates) if verifies(index, query, verify) else None
    slack = 0.0
    if best is not None:
        # the verify reads each row's first candidates (their songs are scored first, whatever their
        # bound) and moves a song score by at most its margin, the k-th one too: a song whose bound
        # lies within twice the margin of the k-th score may still come in
        first = keys[:, : verify.candidates][valid[:, : verify.candidates]]
        bound[np.searchsorted(cand, np.unique(first))] = -np.inf
        slack = 2.0 * verify.margin

    by_bound = np.argsort(bound, kind="stable")
    shortlists = vids[:, : index.shortlist] if index.signature_dims else None
    chunk = max(4 * k, SCORE_CHUNK)
    scored: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    table = index.table()
    for pos in range(0, cand.size, chunk):
        sel = by_bound[pos : pos + chunk]
        scored.append(sel)
        score, _, dist, cols, _, _ = _score_songs(index, flat, cand[sel], n_shifts, rule, shortlists, query.tempo)
        scores.append(score)
        if best is not None:
            best.add(dist, table.vector_ids[cols])
        so_far = np.concatenate(scores)
        nxt = pos + chunk
        if so_far.size >= k and (nxt >= cand.size or np.partition(so_far, k - 1)[k - 1] + slack <= bound[by_bound[nxt]]):
            break
    sel = np.concatenate(scored)
    song_score = np.concatenate(scores)
    checked = _verify_candidates(index, query, best, verify) if best is not None else None
    if checked is not None:  # the songs of the phrases it moved (all among the scored), scored again
        again = np.isin(cand[sel], index.song_keys_of(np.unique(checked.vids)))
        if again.any():
            song_score[again] = _score_songs(index, flat, cand[sel][again], n_shifts, rule, shortlists, query.tempo,
                                             checked)[0]

    # distance, then song id among (near-)ties, so the order does not depend on the build history
    by_score = np.argsort(song_score, kind="stable")
    kth = song_score[by_score[min(k, by_score.size) - 1]]
    pool = by_score[song_score[by_score] <= kth + 1e-6]
    records = index.catalogue.by_keys([int(c) for c in cand[sel[pool]]])
    order = sorted(pool.tolist(), key=lambda j: (round(float(song_score[j]), 6),
                                                 records[int(cand[sel[j]])].song_id))[:k]
    top = cand[sel[order]]
    score, best_shift, dist, cols, offsets, lengths = _score_songs(index, flat, top, n_shifts, rule, shortlists,
                                                                   query.tempo, checked)
    hits = []
    for j, key in enumerate(top):
        s = int(best_shift[j])
        block = dist.reshape(n_shifts, n_q, -1)[s][:, offsets[j] : offsets[j] + lengths[j]]
        nearest = block.argmin(axis=1)
        hit_bars = table.bar_offsets[cols[offsets[j] + nearest]]
        match_d = block[np.arange(n_q), nearest]
        m_order = np.argsort(match_d, kind="stable")
        matches = tuple(Match(int(query.bar_offsets[i]), int(hit_bars[i]), float(match_d[i])) for i in m_order)
        rec = records[int(key)]
        hits.append(SongHit(j + 1, rec.song_id, rec.title, rec.path, float(score[j]), int(query.shifts[s]),
                            bool(query.content_hash) and rec.content_hash == query.content_hash, matches))
    return hits


def search(index: LatentIndex, query: str, encoder_factory, k: int = 10, bars: tuple[int, int] | None = None,
           any_key: bool = False, rule: str = DEFAULT_RULE, verify: VerifyConfig | None = DEFAULT_VERIFY) -> SearchResult:
    """Read, cut, encode and search: the library behind ``midivae search``."""
    q = resolve_query(index, query, encoder_factory, bars, any_key, with_notes=index_verifies(index, verify))
    hits = rank_songs(index, q, k=k, rule=rule, verify=verify)
    return SearchResult(query=q.label, query_kind=q.kind, n_query_phrases=int(q.vectors.shape[1]), rule=rule,
                        any_key=any_key, excluded=(q.exclude_song_id,) if q.exclude_song_id else (), hits=tuple(hits),
                        verified=verifies(index, q, verify))
