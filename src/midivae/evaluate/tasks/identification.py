"""Task 6: version identification, each file with another version of its song querying every other file."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Sequence

import numpy as np

from midivae.evaluate.data import flatten
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding
from midivae.evaluate.metrics import (
    Prepared,
    first_relevant_metrics,
    group_min,
    pairwise,
    past_fine,
    summarise,
    take,
    tie_tolerance,
    two_stage,
)
from midivae.evaluate.parallel import map_chunks
from midivae.evaluate.tasks.chunks import embed_flat, flat_notes, query_chunk, verify_chunk
from midivae.verify import nearest, verified


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
    file's distance, as the index does (midivae.search_space.tempo_term). Where the search runs
    the exact verify (``emb.verify``), each query phrase's near-tied nearest phrases among the
    files scored exactly are re-ordered by their notes first, as the index does. ``trim`` > 0: the mean
    over the query's nearest phrases only,
    leaving out that share of them (see :func:`query_mean`).
    ``versions``: a :class:`~midivae.evaluate.versions.VersionSet`.
    """
    emb = as_embedding(embed, distance)
    songs, group = versions.songs, np.asarray(versions.group)
    flat = flatten(songs, copy=False)  # read a batch at a time from the files' own arrays (no second copy)
    _, gid = np.unique(group, return_inverse=True)
    counts = np.bincount(gid)
    query_files = np.nonzero(counts[gid] >= 2)[0]
    if not len(query_files):
        raise ValueError("no song has two versions")
    vectors = embed_flat(emb, flat)
    x = emb.prepare(vectors)
    notes = flat_notes(emb, flat)  # the exact verify, where the search runs it
    ends = np.append(flat.starts[1:], len(flat))
    qrows = np.concatenate([np.arange(flat.starts[i], ends[i]) for i in query_files])
    qlen = ends[query_files] - flat.starts[query_files]
    # the files are searched in one space per query: a query file of several phrases in the space
    # the embedding searches several phrases in, where it has one (a model: without its song part)
    # (the candidates still come from the files' own coarse vectors, as the index finds them)
    qstarts = np.concatenate([[0], np.cumsum(qlen)[:-1]])
    spaces = [(x, x, np.arange(len(query_files)))]  # (query space, searched space, query file positions)
    if emb.several_embed is not None:
        x_several = emb.prepare(emb.several_of(vectors) if emb.several_of is not None
                                else embed_flat(replace(emb, embed=emb.several_embed), flat))
        spaces = [(x, x, np.nonzero(qlen == 1)[0]),
                  (x_several, replace(x_several, coarse=x.coarse), np.nonzero(qlen > 1)[0])]
    del vectors  # the prepared spaces hold what the scoring reads
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
        q_notes = notes.take(rows) if notes is not None else None
        # the query's own file is no candidate ("every other file"): the verify must not see it
        own = flat.song[None, :] == np.repeat(query_files[files], lens)[:, None] if notes is not None else None
        stages = two_stage(q, space)
        if stages is None:
            d = pairwise(q, space)
            if own is not None:
                d[own] = np.inf
            verify_chunk(emb, d, q_notes, notes)
            near = group_min(d, flat.starts)
            file_d[files] = query_mean(near, local, lens, trim)
            if staged:  # a shortlist as long as the index: every file listed
                rest[files] = file_d[files]
                candidate[files] = True
        else:
            fine, rough, kept = stages
            listed = np.logical_or.reduceat(kept, flat.starts, axis=1)
            candidate[files] = np.logical_or.reduceat(listed, local, axis=0)
            if q_notes is not None:  # the verify over the phrases of the files scored exactly, as the index
                scored = candidate[files][np.repeat(np.arange(len(files)), lens)][:, flat.song] & ~own
                cols, first = nearest(np.where(scored, fine, np.inf), emb.verify.candidates)
                new, moved = verified(first, cols, q_notes, notes, emb.verify)
                if moved:
                    np.put_along_axis(fine, cols, new, axis=1)
            file_d[files] = query_mean(group_min(fine, flat.starts), local, lens, trim)
            rest[files] = query_mean(group_min(rough, flat.starts), local, lens, trim)
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
