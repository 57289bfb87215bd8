"""Experiment: reward phrases that match in order when ranking candidate versions.

The version task's rule (D: the mean over the query's phrases of the nearest distance in the
candidate) ignores the order of the phrases: a distractor whose phrases each resemble some
query phrase scores like a real version whose phrases follow the query's. Cover-song
identification aligns the two sequences instead. This re-ranks each query's ``K`` nearest files
by D with a diagonal rule: each cell of the query x candidate phrase-distance matrix is averaged
with its neighbours along a diagonal (``w`` phrases either side, slopes 1:1 and, for double or
half time, 1:2 and 2:1; cells past the ends are left out), then the rule is applied to that
matrix (D_w); a candidate's score is ``(1 - a) D + a D_w``. Files past the ``K`` keep D's order.

Scored on the shipped model's song-free search vectors (exact cosine, no two-stage search), on
the validation split's ``hard`` and ``hard-drums`` re-renderings among all the store's songs and
on the real versions.

    python scripts/experiments/aligned_versions.py --store /tmp/lpdstore [--real-versions DIR/versions.csv] [--split validation]

Figures: docs/model_selection.md ("Phrases in order").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate.baselines import song_free_embed
from midivae.evaluate.data import flatten
from midivae.evaluate.metrics import summarise
from midivae.evaluate.tasks import other_version_ranks
from midivae.evaluate.versions import validation_version_sets

CHUNK_FILES = 48
SLOPES = ((1, 1), (1, 2), (2, 1))


def file_distances(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """D[q, c]: the mean over q's phrases of the nearest distance among c's phrases."""
    ends = np.append(starts[1:], len(x))
    lengths = ends - starts
    out = np.empty((len(starts), len(starts)), dtype=np.float32)
    for a in range(0, len(starts), CHUNK_FILES):
        b = min(len(starts), a + CHUNK_FILES)
        d = 1.0 - x[starts[a] : ends[b - 1]] @ x.T
        near = np.minimum.reduceat(d, starts, axis=1)
        out[a:b] = np.add.reduceat(near, starts[a:b] - starts[a], axis=0) / lengths[a:b, None]
    return out


def diagonal_mean(d: np.ndarray, w: int, slope: tuple[int, int]) -> np.ndarray:
    """Each cell averaged with the cells ``t`` steps along the slope, |t| <= w, that exist."""
    m, n = d.shape
    total = np.zeros_like(d)
    count = np.zeros_like(d)
    si, sj = slope
    for t in range(-w, w + 1):
        di, dj = t * si, t * sj
        i0, i1 = max(0, -di), min(m, m - di)
        j0, j1 = max(0, -dj), min(n, n - dj)
        if i0 >= i1 or j0 >= j1:
            continue
        total[i0:i1, j0:j1] += d[i0 + di : i1 + di, j0 + dj : j1 + dj]
        count[i0:i1, j0:j1] += 1
    return total / count


def aligned_distance(d: np.ndarray, w: int) -> float:
    """The rule on the diagonal-averaged matrix, the best slope per cell."""
    smooth = np.minimum.reduce([diagonal_mean(d, w, s) for s in SLOPES])
    return float(smooth.min(axis=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--k", type=int, default=20, help="candidates re-ranked per query")
    args = ap.parse_args()
    torch.set_num_threads(2)
    embed = song_free_embed(midivae.load_model(None))
    sets = validation_version_sets(args.store, real_csv=args.real_versions, split=args.split)
    grid = [(w, a) for w in (1, 2) for a in (0.5, 1.0)]
    for name, vs in sets.items():
        t0 = time.time()
        flat = flatten(vs.songs)
        x = np.concatenate([embed(b) for b in flat.batches(None, 1024)])
        starts = flat.starts
        ends = np.append(starts[1:], len(x))
        fwd = file_distances(x, starts)
        _, gid = np.unique(np.asarray(vs.group), return_inverse=True)
        query_files = np.nonzero(np.bincount(gid)[gid] >= 2)[0]
        base = fwd[query_files].astype(np.float64)
        base[np.arange(len(query_files)), query_files] = np.inf
        rules = {"D (the rule)": base.copy()}
        for w, a in grid:
            rules[f"w={w} a={a}"] = base.copy()
        for qi, q in enumerate(query_files):
            cand = np.argsort(base[qi], kind="stable")[: args.k]
            xq = x[starts[q] : ends[q]]
            big = base[qi, cand].max() + 1.0  # the re-ranked stay ahead of the rest, as in a re-rank
            for c in cand:
                d = 1.0 - xq @ x[starts[c] : ends[c]].T
                for w, a in grid:
                    rules[f"w={w} a={a}"][qi, c] = (1 - a) * base[qi, c] + a * aligned_distance(d, w) - big
        print(f"\n{name} ({len(query_files)} queries, {len(vs.songs)} files; K={args.k}; {time.time() - t0:.0f} s)")
        print("| rule | Hit@1 / Hit@10 / MRR |\n|---|---|")
        for rule, d in rules.items():
            s = summarise(other_version_ranks(d, query_files, gid, tol=1e-6))
            print(f"| {rule} | {s['hit@1']:.3f} / {s['hit@10']:.3f} / {s['mrr']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
