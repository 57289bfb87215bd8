"""Task 3: robustness, every phrase indexed and altered copies of sampled phrases queried; the
altered queries (:class:`AlteredQueries`), built once and shared by every method."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from midivae.constants import BARS_PER_PHRASE
from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten, pack, unpack
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding, embed_phrases
from midivae.evaluate.metrics import group_min, pairwise, rank_of_target, tie_tolerance
from midivae.evaluate.parallel import progress_bar
from midivae.evaluate.tasks import chunks
from midivae.evaluate.tasks.chunks import _concat, _hits, embed_flat, flat_notes, query_chunk, verify_chunk
from midivae.verify import PhraseNotes

#: Any-key search costs 12 searches per query: it runs on this many of the robustness queries.
ANY_KEY_QUERIES = 500
#: phrases in the query's song: the robustness task's phrase Hit@1 is also given per group, since a
#: long song holds more near-repeats of a phrase (docs/model_selection.md, "Note lengths in the landmarks")
SONG_LENGTH_GROUPS: tuple[tuple[int, int | None], ...] = ((0, 20), (20, 30), (30, None))
#: a phrase-level miss "found a near-copy" when the phrase it ranked first differs from the original
#: in at most this share of the original's cells (a note held a step longer, one note more): the
#: report says how many misses are such, which no compact vector can be expected to order
NEAR_COPY_SHARE = 0.01
#: set bits of every byte value
_BITS_SET = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def song_length_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}-{hi - 1}"


def _previous_rows(flat: Flat) -> np.ndarray:
    """Row of each phrase's contiguous predecessor in its song (bar offset 4 earlier), else -1."""
    prev = np.arange(len(flat)) - 1
    ok = (prev >= 0) & (flat.song == flat.song[np.maximum(prev, 0)])
    ok &= flat.bar_offsets[np.maximum(prev, 0)] == flat.bar_offsets - BARS_PER_PHRASE
    return np.where(ok, prev, -1)


def _row_hashes(packed: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """A 64-bit hash of each packed phrase (equal phrases, equal hashes): the sum of its 64-bit
    words times fixed odd multipliers, wrapping, a chunk of rows at a time."""
    n_words = packed.shape[1] // 8
    mult = np.random.default_rng(0xD0B1E).integers(1, 1 << 63, n_words, dtype=np.uint64) | np.uint64(1)
    out = np.empty(len(packed), np.uint64)
    for a in range(0, len(packed), chunk):
        words = np.ascontiguousarray(packed[a : a + chunk, : 8 * n_words]).view(np.uint64)
        out[a : a + chunk] = (words * mult).sum(axis=1, dtype=np.uint64)
    return out


def _duplicate_mask_pairs(flat: Flat, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query position, index row) pairs of exact copies of each query's original phrase, other
    than the original itself: an exact copy is the same answer, so it is masked out of the
    phrase-level ranking rather than allowed to tie with the original.

    Rows are matched by hash and confirmed byte for byte (a bytes copy of every phrase held the
    whole collection a second time: ~10 KB per phrase, in each method's robustness task)."""
    hashes = _row_hashes(flat.packed)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    lo = np.searchsorted(sorted_hashes, hashes[rows], "left")
    hi = np.searchsorted(sorted_hashes, hashes[rows], "right")
    qs, cols = [], []
    for qi in np.nonzero(hi - lo > 1)[0]:  # only queries whose hash another phrase shares
        r = rows[qi]
        for other in order[lo[qi] : hi[qi]]:
            if other != r and np.array_equal(flat.packed[other], flat.packed[r]):
                qs.append(qi)
                cols.append(other)
    return np.asarray(qs, dtype=np.int64), np.asarray(cols, dtype=np.int64)


@dataclass(frozen=True)
class AlteredQueries:
    """The altered copies of the sampled phrases, built once and shared by every method."""

    rows: np.ndarray  # sampled index rows (sorted)
    kept: dict  # alteration -> bool mask over rows (False: the alteration changed nothing)
    packed: dict  # alteration -> packed altered phrases of the kept rows
    #: (query position, row) of each exact copy of a sampled phrase elsewhere in the collection
    #: (:func:`_duplicate_mask_pairs`) of ``n_index`` phrases it was sampled from: found once here,
    #: not in every method's robustness run
    copies: tuple[np.ndarray, np.ndarray]
    n_index: int


def altered_queries(
    songs: Sequence[SongPhrases], n_queries: int = 1000, alterations: Sequence[str] | None = None, seed: int = 0
) -> AlteredQueries:
    """Sample ``n_queries`` phrases and alter each one with every alteration."""
    from midivae.evaluate.alterations import ALTERATIONS, changed

    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    names = list(alterations) if alterations is not None else list(ALTERATIONS)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(n_queries, len(flat)), replace=False))
    previous = _previous_rows(flat)
    kept: dict[str, np.ndarray] = {}
    packed: dict[str, np.ndarray] = {}
    for ai, name in enumerate(names):
        arng = np.random.default_rng([seed, ai])
        keeps, parts = [], []
        for a in range(0, len(rows), chunks.QUERY_CHUNK):
            chunk = rows[a : a + chunks.QUERY_CHUNK]
            orig = unpack(flat.packed[chunk])
            prev_rows = previous[chunk]
            prev = unpack(flat.packed[np.maximum(prev_rows, 0)])
            prev[prev_rows < 0] = False
            altered = ALTERATIONS[name](orig, prev, arng)
            keep = changed(orig, altered)
            keeps.append(keep)
            parts.append(pack(altered[keep]))
        kept[name] = np.concatenate(keeps)
        packed[name] = np.concatenate(parts)
    return AlteredQueries(rows, kept, packed, _duplicate_mask_pairs(flat, rows), len(flat))


def robustness(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    n_queries: int = 1000,
    alterations: Sequence[str] | None = None,
    any_key: bool = True,
    any_key_queries: int | None = ANY_KEY_QUERIES,
    seed: int = 0,
    vectors=None,
    queries: AlteredQueries | None = None,
    notes=None,
) -> dict[str, float]:
    """Index every phrase; query with altered copies of ``n_queries`` sampled phrases.

    Per alteration: Hit@1 of the original phrase (exact copies of it count as the same answer)
    and of the right song (min distance over its phrases); the phrase Hit@1 also per length of the
    query's song (:data:`SONG_LENGTH_GROUPS`), and what its misses found instead (the share in the
    query's own song, and the share of near-copies of the original: :data:`NEAR_COPY_SHARE`).
    Queries the alteration leaves unchanged are skipped. For the transpositions, ``any_key`` also queries with the 12
    transpositions of the altered phrase and keeps each candidate's best distance, on the first
    ``any_key_queries`` kept queries (12x the search cost; None: all of them).
    ``queries`` (from :func:`altered_queries` on the same songs) saves rebuilding them, ``vectors``
    and ``notes`` (every phrase's, in order) re-embedding and re-reading the phrases.
    Where the embedding's search runs the exact verify (``emb.verify``: midivae.verify), every
    query's distances are the verified ones (``verified_share``: the share of queries it re-ordered).
    """
    from midivae.evaluate.alterations import ANY_KEY_SHIFTS, TRANSPOSITIONS, transpose

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    if queries is None:
        queries = altered_queries(songs, n_queries, alterations, seed)
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    index = emb.prepare(vecs)
    index_notes = flat_notes(emb, flat, notes)  # the exact verify, where the search runs it
    rows = queries.rows
    song_sizes = np.bincount(flat.song, minlength=len(songs))
    # queries sampled from this collection carry their copies; from its first songs only (an
    # experiment adding distractors after them), the copies are looked up in all of it
    dup_q, dup_c = queries.copies if queries.n_index == len(flat) else _duplicate_mask_pairs(flat, rows)
    out: dict[str, float] = {"n_sampled": int(len(rows)), "n_index": int(len(flat)), "n_songs": len(songs),
                             "chance_song_hit1": 1.0 / len(songs)}

    def ranks_under(name: str, keep: np.ndarray, bar) -> dict[str, float]:
        kept_rows = rows[keep]
        qpos_all = np.nonzero(keep)[0]
        song_st, row_st, song_ak, row_ak, found_instead = [], [], [], [], []
        n_verified = 0
        step = query_chunk(len(flat))
        for a in range(0, len(kept_rows), step):
            altered = unpack(queries.packed[name][a : a + step])
            target, qpos = kept_rows[a : a + step], qpos_all[a : a + step]
            tempo = flat.tempo[target]  # an alteration of the notes keeps the song's tempo
            q = emb.prepare(embed_phrases(emb, altered, tempo))
            d = pairwise(q, index)
            n_verified += verify_chunk(emb, d, _notes(emb, altered), index_notes)
            tol = tie_tolerance(q, index)
            s0, r0 = self_ranks(d, flat, target, qpos, dup_q, dup_c, tol)
            song_st.append(s0)
            row_st.append(r0)
            found_instead.append(nearest_others(d, target, qpos, dup_q, dup_c))
            if any_key and name in TRANSPOSITIONS and (any_key_queries is None or a < any_key_queries):
                n_ak = len(altered) if any_key_queries is None else min(len(altered), any_key_queries - a)
                altered, target, qpos, d, tempo = altered[:n_ak], target[:n_ak], qpos[:n_ak], d[:n_ak], tempo[:n_ak]
                tol = tol[:n_ak]
                best = d
                for shift in ANY_KEY_SHIFTS:
                    if shift != 0:
                        moved = transpose(altered, shift)
                        qv = emb.prepare(embed_phrases(emb, moved, tempo))
                        d_shift = pairwise(qv, index)
                        verify_chunk(emb, d_shift, _notes(emb, moved), index_notes)  # each key verified, as the index
                        best = np.minimum(best, d_shift)
                s1, r1 = self_ranks(best, flat, target, qpos, dup_q, dup_c, tol)
                song_ak.append(s1)
                row_ak.append(r1)
            bar.update(len(s0.closer))
        got = {f"{name}/n": int(keep.sum()), f"{name}/skipped_unchanged": int((~keep).sum())}
        if emb.verify is not None:  # the share of queries whose near tie the notes re-ordered
            got[f"{name}/verified_share"] = n_verified / max(1, int(keep.sum()))
        phrase_hits, n_phrases = _concat(row_st).hit(1), song_sizes[flat.song[kept_rows]]
        for lo, hi in SONG_LENGTH_GROUPS:  # where the phrase-level misses come from
            group = (n_phrases >= lo) & (n_phrases < (hi if hi is not None else np.inf))
            label = song_length_label(lo, hi)
            got[f"{name}/n_in_songs_{label}"] = int(group.sum())
            if group.any():
                got[f"{name}/phrase_hit1_in_songs_{label}"] = float(phrase_hits[group].mean())
        found = np.concatenate(found_instead) if found_instead else np.zeros(0, dtype=np.int64)
        got.update(_what_misses_found(flat, kept_rows, found, 1.0 - phrase_hits, name))
        parts = [("song_hit1", song_st), ("phrase_hit1", row_st)]
        if song_ak:
            got[f"{name}/n_anykey"] = int(sum(len(x.closer) for x in song_ak))
            parts += [("song_hit1_anykey", song_ak), ("phrase_hit1_anykey", row_ak)]
        for key, stats in parts:  # each Hit@1 with its bootstrap 95% interval
            hits = _hits(_concat(stats), (1,))
            got[f"{name}/{key}"] = hits["hit@1"]
            got[f"{name}/{key}_lo95"], got[f"{name}/{key}_hi95"] = hits["hit@1_lo95"], hits["hit@1_hi95"]
        return got

    with progress_bar(sum(int(keep.sum()) for keep in queries.kept.values())) as bar:
        for name, keep in queries.kept.items():
            out.update(ranks_under(name, keep, bar))
    return out


def _notes(emb: Embedding, phrases: np.ndarray) -> PhraseNotes | None:
    return PhraseNotes.from_phrases(phrases) if emb.verify is not None else None


def _copies_in_chunk(qpos: np.ndarray, dup_q: np.ndarray, dup_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk row, index row) of the exact copies of the originals of a chunk's queries (their
    positions ``qpos`` among the sampled rows; ``dup_q``, ``dup_c``: :attr:`AlteredQueries.copies`)."""
    sel = np.isin(dup_q, qpos)
    return np.searchsorted(qpos, dup_q[sel]), dup_c[sel]


@contextmanager
def _set_aside(d: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Iterator[np.ndarray]:
    """``d`` with ``d[rows, cols]`` at +inf inside the block, restored after: no copy of a chunk's
    distances (256 x the collection, float64) to mask a few cells."""
    saved = d[rows, cols].copy()
    d[rows, cols] = np.inf
    try:
        yield d
    finally:
        d[rows, cols] = saved


def nearest_others(d: np.ndarray, target_rows: np.ndarray, qpos: np.ndarray, dup_q: np.ndarray,
                   dup_c: np.ndarray) -> np.ndarray:
    """Per query row of ``d``, the index row ranked first once its original phrase and the
    original's exact copies are set aside: what a phrase-level miss found instead."""
    rows, cols = _copies_in_chunk(qpos, dup_q, dup_c)
    rows = np.concatenate([np.arange(len(target_rows)), rows])
    cols = np.concatenate([np.asarray(target_rows, dtype=np.int64), cols])
    with _set_aside(d, rows, cols):
        return np.argmin(d, axis=1)


def differing_cells(packed: np.ndarray, rows: np.ndarray, others: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per pair, how many cells ``others`` differs in (on in one, off in the other) as a share of
    the cells on in ``rows`` (counted as at least one)."""
    out = np.empty(len(rows), dtype=np.float64)
    for a in range(0, len(rows), chunk):
        mine, theirs = packed[rows[a : a + chunk]], packed[others[a : a + chunk]]
        n_diff = _BITS_SET[mine ^ theirs].sum(axis=1, dtype=np.int64)
        n_on = _BITS_SET[mine].sum(axis=1, dtype=np.int64)
        out[a : a + chunk] = n_diff / np.maximum(n_on, 1)
    return out


def _what_misses_found(flat: Flat, rows: np.ndarray, found: np.ndarray, missed: np.ndarray, name: str) -> dict[str, float]:
    """How many phrase-level misses there were (in expectation: a tie shares its miss), and what
    share of them ranked first a phrase of the query's own song, and a near-copy of the original."""
    total = float(missed.sum())
    got = {f"{name}/phrase_misses": total}
    if total > 0:
        same_song = flat.song[found] == flat.song[rows]
        near_copy = differing_cells(flat.packed, rows, found) <= NEAR_COPY_SHARE
        got[f"{name}/phrase_misses_same_song"] = float((missed * same_song).sum() / total)
        got[f"{name}/phrase_misses_near_copy"] = float((missed * near_copy).sum() / total)
    return got


def self_ranks(d, flat: Flat, target_rows, qpos, dup_q, dup_c, tol):
    """Song-level and phrase-level rank statistics of each query's own song and phrase (the
    original's exact copies set aside: the same answer, not rivals)."""
    song = rank_of_target(group_min(d, flat.starts), flat.song[target_rows], tol)
    with _set_aside(d, *_copies_in_chunk(qpos, dup_q, dup_c)):
        return song, rank_of_target(d, target_rows, tol)
