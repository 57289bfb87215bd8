"""The evaluation tasks, one function each, every one taking an embedding function.

``embed`` is an :class:`~midivae.evaluate.embedding.Embedding` or a bare callable
``embed(phrases bool (n, 4, 48, 84, 5)) -> float32 (n, d)`` with ``distance`` "euclidean" or
"cosine". ``songs`` is a list of :class:`~midivae.evaluate.data.SongPhrases` (or ``(id, phrases)``
pairs). Every ranking metric counts ties in expectation (see :mod:`midivae.evaluate.metrics`).
Each function returns a flat dict of floats and counts, ready for ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from midivae.constants import BARS_PER_PHRASE
from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten, pack, pick, unpack
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding, embed_batches, embed_phrases
from midivae.evaluate.metrics import (
    Prepared,
    RankStats,
    first_relevant_metrics,
    group_min,
    is_two_stage,
    pairwise,
    past_fine,
    prepare,
    rank_of_target,
    summarise,
    take,
    tie_tolerance,
    two_stage,
)
from midivae.evaluate.parallel import map_chunks, one_blas_thread, progress_bar

QUERY_CHUNK = 256
#: cells (query rows x collection phrases) of one chunk's distance matrix: 2**23, 64 MB in float64.
#: Up to 32,768 phrases a chunk holds QUERY_CHUNK queries, beyond that fewer, so what a chunk holds
#: (several such matrices, in each thread) stays bounded on a large collection.
CHUNK_CELLS = 1 << 23


def query_chunk(n_columns: int) -> int:
    """Query rows per chunk against ``n_columns`` phrases (see :data:`CHUNK_CELLS`)."""
    return min(QUERY_CHUNK, max(16, CHUNK_CELLS // max(1, n_columns)))


ORIGINAL_PROTOCOL_SONGS = 1086
#: Any-key search costs 12 searches per query: it runs on this many of the robustness queries.
ANY_KEY_QUERIES = 500
#: phrases in the query's song: the robustness task's phrase Hit@1 is also given per group, since a
#: long song holds more near-repeats of a phrase (docs/model_selection.md, "Note lengths in the landmarks")
SONG_LENGTH_GROUPS: tuple[tuple[int, int | None], ...] = ((0, 20), (20, 30), (30, None))


def song_length_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}-{hi - 1}"


def embed_flat(emb: Embedding, flat: Flat, rows: np.ndarray | None = None, batch: int = 256):
    """Embed the phrases of a :class:`Flat` (optionally a subset of its rows), batch by batch
    (a progress bar under the current :func:`~midivae.evaluate.parallel.progress` label)."""
    rows = np.arange(len(flat)) if rows is None else np.asarray(rows)
    tempi = (flat.tempo[rows[i : i + batch]] for i in range(0, len(rows), batch))
    with progress_bar(len(rows), shown=len(rows) > 4 * batch, unit="phrase") as bar:
        return embed_batches(emb, _counted_batches(zip(flat.batches(rows, batch), tempi), bar))


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
) -> dict[str, np.ndarray]:
    """Song-level (min over a song's phrases) and, optionally, phrase-level ranks of the targets.

    ``starts`` are the first index rows of each song group (index rows sorted by song);
    ``target_song`` is the group position of each query's song, ``target_row`` the index row of
    the phrase it should find.
    """

    def ranks(at: np.ndarray) -> tuple[RankStats, RankStats | None]:
        q = take(queries, at)
        d = pairwise(q, index)
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
    first = np.stack([s.packed[0] for s in songs])  # packed: unpacked a chunk at a time
    tempo = np.array([s.tempo for s in songs], dtype=np.float64)
    rng = np.random.default_rng(seed)
    z1 = emb.prepare(_sampled_in_chunks(emb, first, rng, tempo))
    z2 = emb.prepare(_sampled_in_chunks(emb, first, rng, tempo))
    d = pairwise(z1, z2)
    stats = rank_of_target(d, np.arange(len(songs)), tie_tolerance(z1, z2))
    out = _hits(stats, (1,))
    return {"top1": out["hit@1"], "top1_lo95": out["hit@1_lo95"], "top1_hi95": out["hit@1_hi95"], "mrr": out["mrr"],
            "n_songs": len(songs), "chance_top1": 1.0 / len(songs)}


def _sampled_in_chunks(emb: Embedding, packed: np.ndarray, rng: np.random.Generator, tempo: np.ndarray) -> np.ndarray:
    """``emb.encode_sampled`` of packed phrases, ``QUERY_CHUNK`` at a time: one batch of 1,086
    phrases through the model and its search head peaked at ~1.4 MB per phrase. The chunks draw
    from ``rng`` in the order one call would, so the vectors are the same."""
    return np.concatenate([np.asarray(emb.encode_sampled(unpack(packed[a : a + QUERY_CHUNK]), rng, tempo[a : a + QUERY_CHUNK]))
                           for a in range(0, len(packed), QUERY_CHUNK)])


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
    index = emb.prepare(xi)
    queries = emb.prepare(xq)
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


# --------------------------------------------------------------------------- task 3


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
        for a in range(0, len(rows), QUERY_CHUNK):
            chunk = rows[a : a + QUERY_CHUNK]
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
) -> dict[str, float]:
    """Index every phrase; query with altered copies of ``n_queries`` sampled phrases.

    Per alteration: Hit@1 of the original phrase (exact copies of it count as the same answer)
    and of the right song (min distance over its phrases); the phrase Hit@1 also per length of the
    query's song (:data:`SONG_LENGTH_GROUPS`). Queries the alteration leaves
    unchanged are skipped. For the transpositions, ``any_key`` also queries with the 12
    transpositions of the altered phrase and keeps each candidate's best distance, on the first
    ``any_key_queries`` kept queries (12x the search cost; None: all of them).
    ``queries`` (from :func:`altered_queries` on the same songs) saves rebuilding them.
    """
    from midivae.evaluate.alterations import ANY_KEY_SHIFTS, TRANSPOSITIONS, transpose

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    if queries is None:
        queries = altered_queries(songs, n_queries, alterations, seed)
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    index = emb.prepare(vecs)
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
        song_st, row_st, song_ak, row_ak = [], [], [], []
        step = query_chunk(len(flat))
        for a in range(0, len(kept_rows), step):
            altered = unpack(queries.packed[name][a : a + step])
            target, qpos = kept_rows[a : a + step], qpos_all[a : a + step]
            tempo = flat.tempo[target]  # an alteration of the notes keeps the song's tempo
            q = emb.prepare(embed_phrases(emb, altered, tempo))
            d = pairwise(q, index)
            tol = tie_tolerance(q, index)
            s0, r0 = self_ranks(d, flat, target, qpos, dup_q, dup_c, tol)
            song_st.append(s0)
            row_st.append(r0)
            if any_key and name in TRANSPOSITIONS and (any_key_queries is None or a < any_key_queries):
                n_ak = len(altered) if any_key_queries is None else min(len(altered), any_key_queries - a)
                altered, target, qpos, d, tempo = altered[:n_ak], target[:n_ak], qpos[:n_ak], d[:n_ak], tempo[:n_ak]
                tol = tol[:n_ak]
                best = d
                for shift in ANY_KEY_SHIFTS:
                    if shift != 0:
                        qv = emb.prepare(embed_phrases(emb, transpose(altered, shift), tempo))
                        best = np.minimum(best, pairwise(qv, index))
                s1, r1 = self_ranks(best, flat, target, qpos, dup_q, dup_c, tol)
                song_ak.append(s1)
                row_ak.append(r1)
            bar.update(len(s0.closer))
        got = {f"{name}/n": int(keep.sum()), f"{name}/skipped_unchanged": int((~keep).sum())}
        phrase_hits, n_phrases = _concat(row_st).hit(1), song_sizes[flat.song[kept_rows]]
        for lo, hi in SONG_LENGTH_GROUPS:  # where the phrase-level misses come from
            group = (n_phrases >= lo) & (n_phrases < (hi if hi is not None else np.inf))
            label = song_length_label(lo, hi)
            got[f"{name}/n_in_songs_{label}"] = int(group.sum())
            if group.any():
                got[f"{name}/phrase_hit1_in_songs_{label}"] = float(phrase_hits[group].mean())
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


def self_ranks(d, flat: Flat, target_rows, qpos, dup_q, dup_c, tol):
    """Song-level and phrase-level rank statistics of each query's own song and phrase."""
    song = rank_of_target(group_min(d, flat.starts), flat.song[target_rows], tol)
    d = d.copy()
    sel = np.isin(dup_q, qpos)
    if sel.any():
        local = np.searchsorted(qpos, dup_q[sel])
        d[local, dup_c[sel]] = np.inf
    return song, rank_of_target(d, target_rows, tol)


# --------------------------------------------------------------------------- task 4


def song_vectors(flat: Flat, vectors, distance: str):
    """One vector per song: the mean of its phrase vectors (unit vectors first, for cosine)."""
    import scipy.sparse as sp

    p = prepare(vectors, distance)  # normalised for cosine
    n_songs = len(flat.starts)
    counts = np.bincount(flat.song, minlength=n_songs).astype(np.float64)
    avg = sp.csr_matrix((1.0 / counts[flat.song], (flat.song, np.arange(len(flat)))), shape=(n_songs, len(flat)))
    out = avg.astype(np.float32) @ p.vectors
    return sp.csr_matrix(out) if sp.issparse(out) else np.asarray(out, dtype=np.float32)


def genre_consistency(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    labels: dict[str, str],
    k: int = 10,
    vectors=None,
    seed: int = 0,
) -> dict[str, float]:
    """Song vectors of the labelled songs: precision@k of same-genre neighbours and
    leave-one-out k-NN balanced accuracy (expected vote; ties shared), beside the majority
    rate, chance, and what this embedding reaches with the labels shuffled over its songs (the
    95th percentile of 200 shuffles); and the genre-balanced same-genre AUC over each song's
    whole ranking (:func:`~midivae.evaluate.metrics.same_label_auc`), which still shows a
    grouping where classes are too small for a 10-NN vote to turn. ``labels``: song id -> genre
    (songs with exactly one label)."""
    from midivae.evaluate.metrics import (balanced_accuracy, knn_vote, knn_weights, precision_at_k, same_label_auc,
                                          shuffled_label_band)

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s) and s.song_id in labels]
    if len(songs) < k + 1:
        return {"n_songs": len(songs), "skipped": f"fewer than {k + 1} labelled songs"}  # type: ignore[dict-item]
    flat = flatten(songs)
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    if emb.song_dims:
        vecs = vecs[:, : emb.song_dims]
    sv = prepare(song_vectors(flat, vecs, emb.distance), emb.distance)
    d = pairwise(sv, sv)
    np.fill_diagonal(d, np.inf)
    tol = tie_tolerance(sv, sv)
    names = sorted({labels[s.song_id] for s in songs})
    y = np.array([names.index(labels[s.song_id]) for s in songs])
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    weights = knn_weights(d, k, tol)
    prob = knn_vote(d, y, len(names), k, weights=weights)
    counts = np.bincount(y, minlength=len(names))
    band = shuffled_label_band(d, y, len(names), k, seed=seed, weights=weights)
    auc = same_label_auc(d, y, seed=seed)
    return {
        "balanced_knn_accuracy": balanced_accuracy(prob, y),
        f"precision@{k}": float(precision_at_k(d, same, k, weights=weights).mean()),
        "knn_accuracy": float(prob[np.arange(len(y)), y].mean()),
        "chance_balanced": 1.0 / len(names),
        "majority_rate": float(counts.max() / len(y)),
        f"chance_precision@{k}": float(((counts[y] - 1) / (len(y) - 1)).mean()),
        "shuffled95_balanced": band["balanced"],
        f"shuffled95_precision@{k}": band[f"precision@{k}"],
        "same_genre_auc": auc["auc"],
        "shuffled95_auc": auc["shuffled95"],
        "n_songs": len(songs),
        "n_genres": len(names),
    }


# --------------------------------------------------------------------------- task 6


def version_identification(
    versions,
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    ks: Sequence[int] = (1, 10),
    trim: float = 0.0,
) -> dict[str, float]:
    """Query with each file whose song has another version, against every other file.

    Song-distance rule: the mean, over the query's phrases, of the distance to the nearest
    phrase of the candidate file (every query phrase must find a match somewhere in the
    candidate, wherever it sits). A two-stage search scores exactly the files that appear in a
    query phrase's shortlist, and ranks the rest after them. A query file of several phrases is
    searched in the embedding's space for such queries where it has one (``several_embed``, both
    sides: a model's search vectors without their song part). Hit@k and MRR of the first other
    version, ties in expectation. An embedding with a ``tempo_weight`` (a model whose search head
    reads tempo) adds, for a query of several phrases, that weight x (1 - tempo agreement) to each
    file's distance, as the index does (midivae.search_space.tempo_term). ``trim`` > 0: the mean
    over the query's nearest phrases only,
    leaving out that share of them (see :func:`query_mean`).
    ``versions``: a :class:`~midivae.evaluate.versions.VersionSet`.
    """
    emb = as_embedding(embed, distance)
    songs, group = versions.songs, np.asarray(versions.group)
    flat = flatten(songs)
    _, gid = np.unique(group, return_inverse=True)
    counts = np.bincount(gid)
    query_files = np.nonzero(counts[gid] >= 2)[0]
    if not len(query_files):
        raise ValueError("no song has two versions")
    x = emb.prepare(embed_flat(emb, flat))
    ends = np.append(flat.starts[1:], len(flat))
    qrows = np.concatenate([np.arange(flat.starts[i], ends[i]) for i in query_files])
    qlen = ends[query_files] - flat.starts[query_files]
    # the files are searched in one space per query: a query file of several phrases in the space
    # the embedding searches several phrases in, where it has one (a model: without its song part)
    # (the candidates still come from the files' own coarse vectors, as the index finds them)
    qstarts = np.concatenate([[0], np.cumsum(qlen)[:-1]])
    spaces = [(x, x, np.arange(len(query_files)))]  # (query space, searched space, query file positions)
    if emb.several_embed is not None:
        x_several = emb.prepare(embed_flat(replace(emb, embed=emb.several_embed), flat))
        spaces = [(x, x, np.nonzero(qlen == 1)[0]),
                  (x_several, replace(x_several, coarse=x.coarse), np.nonzero(qlen > 1)[0])]
    # per query file: its mean nearest-phrase distance to every file; two-stage: also by the coarse
    # part, and whether the file is in any of its phrases' shortlists. Computed for a few whole
    # query files at a time (a file's phrases are never split, so its mean is summed as over all
    # rows at once), so no (query phrases x files) matrix is ever held whole.
    file_d = np.empty((len(query_files), len(songs)))
    staged = x.coarse is not None  # the coarse part and the shortlists only matter then
    rest = np.empty_like(file_d) if staged else None
    candidate = np.zeros(file_d.shape, dtype=bool) if staged else None
    tol = np.empty(len(query_files))

    def score_files(query_space: Prepared, space: Prepared, positions: np.ndarray, part: np.ndarray) -> None:
        files = positions[part]
        lens = qlen[files]
        rows = np.concatenate([qrows[qstarts[f] : qstarts[f] + qlen[f]] for f in files])
        local = np.concatenate([[0], np.cumsum(lens)[:-1]])
        q = take(query_space, rows)
        stages = two_stage(q, space)
        if stages is None:
            near = group_min(pairwise(q, space), flat.starts)
            file_d[files] = query_mean(near, local, lens, trim)
            if staged:  # a shortlist as long as the index: every file listed
                rest[files] = file_d[files]
                candidate[files] = True
        else:
            fine, rough, kept = stages
            file_d[files] = query_mean(group_min(fine, flat.starts), local, lens, trim)
            rest[files] = query_mean(group_min(rough, flat.starts), local, lens, trim)
            listed = np.logical_or.reduceat(kept, flat.starts, axis=1)
            candidate[files] = np.logical_or.reduceat(listed, local, axis=0)
        tol[files] = np.maximum.reduceat(tie_tolerance(q, space), local)

    for query_space, space, positions in spaces:
        if len(positions):
            per = max(1, query_chunk(len(flat)) // int(np.ceil(qlen[positions].mean())))
            map_chunks(partial(score_files, query_space, space, positions), len(positions), per)
    if staged:
        # as the index ranks songs: files in any query phrase's shortlist are scored exactly,
        # the rest come after them in coarse order
        file_d = np.where(candidate, file_d, rest + past_fine(x, file_d))
    if emb.tempo_weight:  # a query of several phrases, scored without the song part, gets the tempo term
        from midivae.search_space import tempo_term

        tempi = np.array([s.tempo for s in songs], dtype=np.float64)
        several_files = qlen > 1
        file_d[several_files] += tempo_term(tempi[query_files[several_files]], tempi, emb.tempo_weight)
    out = summarise(other_version_ranks(file_d, query_files, gid, ks, tol))
    out.update(n_files=len(songs), n_queries=int(len(query_files)), n_songs_with_versions=int((counts >= 2).sum()),
               chance_hit1=float(np.mean([(counts[gid[q]] - 1) / (len(songs) - 1) for q in query_files])))
    return out


def other_version_ranks(file_d: np.ndarray, query_files: np.ndarray, gid: np.ndarray, ks: Sequence[int] = (1, 10),
                        tol: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    """Per query file, Hit@k and reciprocal rank of the first other file of its song (``gid``: a
    song number per file) in ``file_d`` (query files x files; the query's own column is set to
    inf in place), ties in expectation."""
    at = np.arange(len(query_files))
    file_d[at, query_files] = np.inf
    rel = gid[query_files][:, None] == gid[None, :]
    rel[at, query_files] = False
    return first_relevant_metrics(file_d, rel, ks, tol)


def query_mean(near: np.ndarray, qstarts: np.ndarray, qlen: np.ndarray, trim: float = 0.0) -> np.ndarray:
    """Per query file (rows ``qstarts[i] : qstarts[i] + qlen[i]`` of ``near``), the mean of its
    phrases' distances to each candidate; with ``trim``, of its ``ceil((1 - trim) x phrases)``
    nearest only, so a part that one version has and the other lacks does not count."""
    if not trim:
        return np.add.reduceat(near, qstarts, axis=0) / qlen[:, None]
    out = np.empty((len(qstarts), near.shape[1]))
    for i, (a, n) in enumerate(zip(qstarts, qlen)):
        keep = max(1, int(np.ceil((1.0 - trim) * n)))
        block = near[a : a + n]
        out[i] = (np.partition(block, keep - 1, axis=0)[:keep] if keep < n else block).mean(axis=0)
    return out


# --------------------------------------------------------------------------- task 5


def model_thresholds(model) -> np.ndarray:
    """Per-track decision thresholds the model learnt on validation, else 0.5 for every track."""
    from midivae.constants import N_TRACKS

    th = getattr(model, "thresholds", None)
    if th is None:
        return np.full(N_TRACKS, 0.5)
    th = np.asarray(th, dtype=np.float64).reshape(-1)
    return np.full(N_TRACKS, float(th[0])) if th.size == 1 else th


def reconstruction(
    songs: Sequence[SongPhrases],
    model,
    *,
    n_phrases: int = 1000,
    n_samples: int = 1000,
    seed: int = 0,
    batch: int = 256,
) -> dict[str, float]:
    """Thresholded reconstructions of sampled phrases (cell precision/recall/F1 per track) and
    MuseGAN's statistics of real phrases, reconstructions and prior samples.

    ``model``: an object with ``encode(phrases) -> (mu, logvar)``, ``decode(z) -> probabilities``
    and ``latent_dim`` (as returned by ``midivae.load_model``); reconstructions decode the
    posterior mean, samples decode z ~ N(0, I); both are thresholded per track.
    """
    from midivae.evaluate.musegan import note_scores, statistics

    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(n_phrases, len(flat)), replace=False))
    th = model_thresholds(model)
    real, recon = [], []
    for ph in flat.batches(rows, batch):
        mu, _ = model.encode(ph)
        probs = np.asarray(model.decode(np.asarray(mu, dtype=np.float32)))
        real.append(ph)
        recon.append(probs >= th)
    real_a, recon_a = np.concatenate(real), np.concatenate(recon)
    out: dict[str, float] = {f"recon/{k}": v for k, v in note_scores(real_a, recon_a).items()}
    samples = []
    for a in range(0, n_samples, batch):
        z = rng.standard_normal((min(batch, n_samples - a), int(model.latent_dim))).astype(np.float32)
        samples.append(np.asarray(model.decode(z)) >= th)
    for name, arr in (("real", real_a), ("reconstruction", recon_a), ("sample", np.concatenate(samples))):
        out.update({f"{name}/{k}": v for k, v in statistics(arr).items()})
    out.update(n_phrases=int(len(rows)), n_samples=int(n_samples))
    out.update({f"threshold/{i}": float(t) for i, t in enumerate(th)})
    return out


# --------------------------------------------------------------------------- task 7

QUERY_K = 100


DENSE_SAMPLE_ROWS = 1000


#: timed passes over the queries; the fastest pass counts (the others met other jobs on this machine)
TIMING_REPEATS = 5
#: passes go on until they have taken this long: a fast method's five passes would otherwise fit
#: in 50 ms, inside one burst of another job, where a slow method's span seconds
TIMING_MIN_SECONDS = 1.0
TIMING_MAX_PASSES = 1000


def _seconds_per_call(run: Callable[[int], object], n: int, repeats: int = TIMING_REPEATS,
                      min_seconds: float | None = None) -> float:
    """Mean seconds of ``run(i)`` over i < n, one call at a time, in the fastest pass (after one
    untimed ``run(0)`` that warms caches) of at least ``repeats`` passes that together take at
    least ``min_seconds``: the usual best-of-N of micro-benchmarks, every method sampled over
    the same stretch of time (as timeit's autorange)."""
    import time

    min_seconds = TIMING_MIN_SECONDS if min_seconds is None else min_seconds
    run(0)
    best, passes, start = float("inf"), 0, time.perf_counter()
    while passes < repeats or (time.perf_counter() - start < min_seconds and passes < TIMING_MAX_PASSES):
        t0 = time.perf_counter()
        for i in range(n):
            run(i)
        best = min(best, (time.perf_counter() - t0) / n)
        passes += 1
    return best


def select_top(sim: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest similarities, largest first (a partial sort, then a sort of ``k``)."""
    n = sim.size
    kept = np.argpartition(sim, n - k)[n - k :] if k < n else np.arange(n)
    return kept[np.argsort(-sim[kept], kind="stable")]


@dataclass(frozen=True)
class ExactScan:
    """Dense vectors laid out for one query's scan: row-major ``(n, d)`` or column-major ``(d, n)``
    (a short vector scans faster column-major on this BLAS, a long one row-major; the cost task
    times both and keeps the faster, for every method alike)."""

    matrix: np.ndarray
    sq_norms: np.ndarray
    distance: str
    column_major: bool

    @classmethod
    def of(cls, vectors: np.ndarray, sq_norms: np.ndarray, distance: str, column_major: bool) -> "ExactScan":
        v = np.asarray(vectors, dtype=np.float32)
        return cls(np.ascontiguousarray(v.T if column_major else v), np.asarray(sq_norms, np.float32), distance,
                   column_major)

    def similarities(self, q: np.ndarray) -> np.ndarray:
        """Larger is nearer: the inner product (unit vectors), or ``2 q.x - |x|^2`` (same order as -L2)."""
        dot = q @ self.matrix if self.column_major else self.matrix @ q
        return 2.0 * dot - self.sq_norms if self.distance == "euclidean" else dot

    def top_k(self, q: np.ndarray, k: int) -> np.ndarray:
        return select_top(self.similarities(q), k)


def two_stage_top_k(coarse: ExactScan, fine: np.ndarray, fine_sq: np.ndarray, distance: str, shortlist: int,
                    coarse_q: np.ndarray, q: np.ndarray, k: int,
                    fingerprints: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    """Scan the coarse vectors, re-rank the ``shortlist`` nearest by the whole vectors (row-major
    ``fine``; with ``fingerprints`` = (index signatures, query signature, weight) plus the
    fingerprint term), the rest of the top ``k`` after them in coarse order (as ``pairwise`` ranks)."""
    sim = coarse.similarities(coarse_q)
    if shortlist < k:  # the rest of the top k keeps the coarse order
        top = select_top(sim, k)
        short, rest = top[:shortlist], top[shortlist:]
    else:  # the re-rank orders the shortlist: no need to sort it first
        n = sim.size
        short = np.argpartition(sim, n - shortlist)[n - shortlist :] if shortlist < n else np.arange(n)
        rest = None
    dot = fine.take(short, axis=0) @ q  # take: a faster gather than fancy indexing
    dist = fine_sq.take(short) - 2.0 * dot if distance == "euclidean" else -dot  # same order as the distance
    if fingerprints is not None:
        signatures, signature, weight = fingerprints
        if signature[0] >= 0:  # a phrase without landmarks matches nothing: the same term for all
            same = (signatures.take(short, axis=0) == signature).sum(axis=1, dtype=np.float32)
            dist -= np.float32(weight / signature.size) * same
    ranked = short[np.argsort(dist, kind="stable")]
    return ranked[:k] if rest is None else np.concatenate([ranked, rest])


def _fastest_layout(time_layout: Callable[[bool], float]) -> float:
    """Seconds per query in the faster of the two layouts."""
    return min(time_layout(False), time_layout(True))


def dense_scan_ms(index: Prepared, queries: Prepared, n_queries: int = 20) -> float:
    """The same exact scan over the vectors stored densely (float32, as the original work compared
    pianorolls): timed over up to ``DENSE_SAMPLE_ROWS`` rows on one query at a time and scaled
    linearly to the whole index, so a sparse baseline's cost is also shown in its plain form."""
    rows = min(DENSE_SAMPLE_ROWS, len(index))
    x = np.asarray(index.vectors[:rows].toarray(), dtype=np.float32)
    qs = [np.asarray(queries.vectors[i].toarray(), dtype=np.float32).ravel() for i in range(min(n_queries, len(queries)))]
    return _scan_ms(x, index.sq_norms[:rows], index.distance, qs, len(index))


def _scan_ms(rows: np.ndarray, sq_norms: np.ndarray, distance: str, queries: list[np.ndarray], n_index: int) -> float:
    """ms per query of the :class:`ExactScan` of dense ``rows`` (the faster layout, one BLAS
    thread), scaled linearly from its rows to an index of ``n_index`` phrases."""
    k = min(QUERY_K, len(rows))

    def timed(column_major: bool) -> float:
        scan = ExactScan.of(rows, sq_norms, distance, column_major)
        return _seconds_per_call(lambda i: scan.top_k(queries[i], k), len(queries))

    with one_blas_thread():
        return _fastest_layout(timed) * 1000 * n_index / len(rows)


#: rounds of (method's query timing, raw dense scan timing) in alternation, and the queries the
#: raw scan is timed on (each ~25 ms over its 1,000 sampled rows)
PAIRED_ROUNDS = 3
PAIRED_DENSE_QUERIES = 5


def raw_dense_rows(flat: Flat, query_phrases: np.ndarray,
                   n_queries: int = PAIRED_DENSE_QUERIES) -> tuple[np.ndarray, list[np.ndarray]]:
    """The raw-pianoroll cosine baseline's vectors as :func:`dense_scan_ms` scans them for that
    row (unit float32 rows of 80,640 cells): up to ``DENSE_SAMPLE_ROWS`` rows of ``flat``, and the
    queries."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(unpack(flat.packed[: min(DENSE_SAMPLE_ROWS, len(flat))])), list(unit(np.asarray(query_phrases[:n_queries])))


def paired_query_ms(index: Prepared, queries: Prepared, k: int, flat: Flat, query_phrases: np.ndarray,
                    rounds: int = PAIRED_ROUNDS) -> tuple[float, float]:
    """(query ms, raw dense scan ms), each the fastest of ``rounds`` timings taken in alternation:
    both meet the same machine, so their ratio does not depend on what else ran on it meanwhile
    (timed apart, in one report's method after another, the ratio moved by 2x)."""
    raw_rows, raw_queries = raw_dense_rows(flat, query_phrases)
    query, dense = float("inf"), float("inf")
    for _ in range(rounds):
        query = min(query, query_seconds(index, queries, k) * 1000)
        dense = min(dense, _scan_ms(raw_rows, np.ones(len(raw_rows), np.float32), "cosine", raw_queries, len(flat)))
    return query, dense


def query_seconds(index: Prepared, queries: Prepared, k: int) -> float:
    """Seconds per single-query top-k search on one thread: the :class:`ExactScan` of the dense
    vectors (two-stage vectors: :func:`two_stage_top_k`), a scipy sparse product for sparse ones."""
    import scipy.sparse as sp

    if sp.issparse(index.vectors):
        xt = sp.csr_matrix(index.vectors.T)

        def sparse_search(i: int) -> None:
            d = np.asarray((queries.vectors[i] @ xt).todense()).ravel()
            d = index.sq_norms - 2.0 * d if index.distance == "euclidean" else -d
            np.argpartition(d, k - 1)[:k]

        return _seconds_per_call(sparse_search, len(queries))
    qv = queries.vectors
    fine, fine_sq = index.vectors, index.sq_norms.astype(np.float32)

    def timed(column_major: bool) -> float:
        if is_two_stage(queries, index):
            c, qc = index.coarse, queries.coarse.vectors
            coarse = ExactScan.of(c.vectors, c.sq_norms, c.distance, column_major)
            fp = index.signatures is not None and queries.signatures is not None
            search = lambda i: two_stage_top_k(coarse, fine, fine_sq, index.distance, index.shortlist, qc[i], qv[i], k,
                                               (index.signatures, queries.signatures[i], index.fp_weight) if fp else None)
        else:
            scan = ExactScan.of(index.vectors, index.sq_norms, index.distance, column_major)
            search = lambda i: scan.top_k(qv[i], k)
        return _seconds_per_call(search, len(qv))

    with one_blas_thread():
        return _fastest_layout(timed)


def cost(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    n_encode: int = 512,
    n_queries: int = 100,
    vectors=None,
    seed: int = 0,
    paired: bool = False,
) -> dict[str, float]:
    """Dimensions, bytes per phrase, encode phrases/s and exact-search ms per query; with
    ``paired``, the query and the raw-pianoroll dense scan also timed in alternation
    (:func:`paired_query_ms`: ``query_ms_paired``, ``raw_dense_ms_paired``, ``speedup_vs_raw_dense``).

    Query time: one query at a time, top-``QUERY_K`` phrases over every phrase of ``songs`` on one
    thread, mean over ``n_queries`` queries in the fastest of at least ``TIMING_REPEATS`` passes
    that take at least ``TIMING_MIN_SECONDS`` together: the same numpy scan for every dense
    method (an exact scan, or the two-stage scan-and-re-rank the embedding's search uses), a scipy
    sparse product for the sparse ones (and, for them, the dense scan too: ``query_ms_dense``).
    """
    import time

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    flat = flatten(songs)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(n_encode, len(flat)), replace=False))
    phrases = np.concatenate(list(flat.batches(rows, 256)))
    timed = Embedding(emb.name, emb.timing_embed or emb.embed, emb.distance, emb.dims, emb.bytes_per_phrase)
    embed_phrases(timed, phrases[:8])  # warm-up (lazy initialisation)
    t0 = time.perf_counter()
    embed_phrases(timed, phrases)
    enc = time.perf_counter() - t0
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    index = emb.prepare(vecs)
    qv = emb.prepare(embed_phrases(emb, phrases[:n_queries], flat.tempo[rows[:n_queries]]))
    k = min(QUERY_K, len(flat))
    seconds = query_seconds(index, qv, k=k)
    extra = {}
    if hasattr(index.vectors, "toarray"):
        extra["query_ms_dense"] = dense_scan_ms(index, qv)
    if paired:
        query_ms, dense_ms = paired_query_ms(index, qv, k, flat, phrases)
        extra.update(query_ms_paired=query_ms, raw_dense_ms_paired=dense_ms, speedup_vs_raw_dense=dense_ms / query_ms,
                     paired_rounds=PAIRED_ROUNDS, paired_dense_queries=PAIRED_DENSE_QUERIES)
    return {
        **extra,
        "dims": int(emb.dims),
        "bytes_per_phrase": int(emb.bytes_per_phrase),
        "encode_phrases_per_s": float(len(phrases) / enc) if enc > 0 else float("inf"),
        "query_ms": float(seconds * 1000),
        "query_n": int(len(qv)),
        "query_repeats": TIMING_REPEATS,
        "query_min_seconds": TIMING_MIN_SECONDS,
        "query_k": int(min(QUERY_K, len(flat))),
        "index_phrases": int(len(flat)),
    }
