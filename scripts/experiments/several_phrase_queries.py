"""Experiment: a query of several phrases with or without the search head's song part.

Whole-file queries, scored exactly by the mean-of-nearest rule on the search vectors (fingerprint
columns left out), with the song part (a) kept on both sides, (b) taken out of the query only,
(c) taken out on both sides (what the search does since session 6, midivae.search_space):

- generated ``hard`` versions of the validation songs (100 re-rendered of 202 files);
- real versions (``--real-versions CSV``, e.g. from scripts/experiments/real_versions.py);
- whole-half song search: each validation song's second half as one query, among the first
  halves of the validation songs and of train songs 0-799 (1,002 songs).

    python scripts/experiments/several_phrase_queries.py --store /tmp/lpdstore --real-versions DIR/versions.csv

Figures: docs/model_selection.md ("Queries of several phrases").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.data import flatten, load_store_split, pick
from midivae.evaluate.versions import VERSION_PRESETS, generated_versions, load_versions

DISTRACTORS = 800


def unit_search_vectors(model, flat) -> tuple[np.ndarray, np.ndarray]:
    """(kept, song-free) search vectors without fingerprint columns, unit rows, float64."""
    head = model.search_head
    kept = np.concatenate([model.encode_search(b) for b in flat.batches(None, 256)])
    free = head.without_song(kept)
    fp = head.fingerprint_hashes
    out = []
    for v in (kept, free):
        v = np.asarray(v[:, : v.shape[1] - fp] if fp else v, np.float64)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out[0], out[1]


def rank_files(starts, ends, index, query, query_files, relevant) -> str:
    """Hit@1 / MRR of the first relevant file, mean over query phrases of the nearest distance."""
    ranks = []
    for qi in query_files:
        d = np.minimum.reduceat(1 - query[starts[qi] : ends[qi]] @ index.T, starts, axis=1).mean(axis=0)
        d[qi] = np.inf
        ranks.append(1 + int((d < d[relevant(qi)].min()).sum()))
    r = np.asarray(ranks)
    return f"{np.mean(r == 1):.3f} / {np.mean(1 / r):.3f}"


def versions_row(vs) -> list[str]:
    flat = flatten(vs.songs)
    group = np.asarray(vs.group)
    ends = np.append(flat.starts[1:], len(flat))
    queries = [i for i, g in enumerate(group) if (group == g).sum() >= 2]
    relevant = lambda qi: np.array([j for j in range(len(group)) if group[j] == group[qi] and j != qi])
    kept, free = unit_search_vectors(MODEL, flat)
    return [rank_files(flat.starts, ends, ix, q, queries, relevant) for ix, q in ((kept, kept), (kept, free), (free, free))]


def whole_half_row(songs, n_queries: int) -> list[str]:
    flat = flatten(songs)
    index_rows, query_rows = T.excerpt_split(flat, len(songs))
    kept, free = unit_search_vectors(MODEL, flat)
    out = []
    for ix, q in ((kept, kept), (kept, free), (free, free)):
        ranks = []
        x = ix[index_rows]
        starts = np.r_[0, np.nonzero(np.diff(flat.song[index_rows]))[0] + 1]
        owner = flat.song[index_rows][starts]
        for s in range(n_queries):
            rows = query_rows[flat.song[query_rows] == s]
            if len(rows):
                d = np.minimum.reduceat(1 - q[rows] @ x.T, starts, axis=1).mean(axis=0)
                ranks.append(1 + int((d < d[np.nonzero(owner == s)[0][0]]).sum()))
        r = np.asarray(ranks)
        out.append(f"{np.mean(r == 1):.3f} / {np.mean(1 / r):.3f}")
    return out


def main() -> None:
    global MODEL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    args = ap.parse_args()
    torch.set_num_threads(2)
    MODEL = midivae.load_model(args.checkpoint)
    val = load_store_split(args.store, "validation", None)
    train = load_store_split(args.store, "train", None)
    tmp = Path(tempfile.mkdtemp(prefix="midivae-versions-"))
    generated = generated_versions(pick(val, None, 0), tmp, 100, 0, VERSION_PRESETS["hard"])
    print("| queries (Hit@1 / MRR) | song part kept | song-free query | song-free both sides |")
    print("|---|---|---|---|")
    print("| generated hard versions, validation |", " | ".join(versions_row(generated)), "|", flush=True)
    if args.real_versions:
        real = load_versions(args.real_versions.parent, args.real_versions)
        print(f"| real versions ({real.n_queries} queries) |", " | ".join(versions_row(real)), "|", flush=True)
    songs = list(val) + list(train[:DISTRACTORS])
    print(f"| whole-half song search, {len(songs)} songs |", " | ".join(whole_half_row(songs, len(val))), "|")


if __name__ == "__main__":
    main()
