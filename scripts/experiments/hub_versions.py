"""Experiment: song-distance rules against hub files for version identification.

Among thousands of files, some files are near every query (hubs: long, generic, dense
arrangements) and take first place from the real other version. This scores, for the shipped
model's song-free search vectors (exact cosine, no two-stage search), the version task's rule
(D: the mean over the query's phrases of the nearest distance in the candidate) beside:

- ``sym``: the mean of D(q, c) and D(c, q) (the candidate's phrases must find the query too);
- ``csls K a``: D(q, c) - a * r(c), r(c) the mean of D(c, .) to the candidate's K nearest other
  files (a hub, near everything, is charged for it; cross-domain similarity local scaling).

on the validation split's ``hard`` and ``hard-drums`` re-renderings among all the store's songs
and on the real versions.

    python scripts/experiments/hub_versions.py --store /tmp/lpdstore [--real-versions DIR/versions.csv]

Figures: docs/model_selection.md ("Hub files").
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


def file_distances(x: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every file against every file: D[q, c] (mean over q's phrases of the nearest in c) and
    R[q, c] = D[c, q] (mean over c's phrases of the nearest in q)."""
    n_files = len(starts)
    ends = np.append(starts[1:], len(x))
    lengths = ends - starts
    fwd = np.empty((n_files, n_files), dtype=np.float32)
    rev = np.empty_like(fwd)
    for a in range(0, n_files, CHUNK_FILES):
        b = min(n_files, a + CHUNK_FILES)
        rows = slice(starts[a], ends[b - 1])
        d = 1.0 - x[rows] @ x.T  # (phrases of files a..b, all phrases)
        local = starts[a:b] - starts[a]
        near = np.minimum.reduceat(d, starts, axis=1)  # (phrases, files)
        fwd[a:b] = np.add.reduceat(near, local, axis=0) / lengths[a:b, None]
        back = np.minimum.reduceat(d, local, axis=0)  # (files a..b, all phrases)
        rev[a:b] = np.add.reduceat(back, starts, axis=1) / lengths[None, :]
    return fwd, rev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    args = ap.parse_args()
    torch.set_num_threads(2)
    embed = song_free_embed(midivae.load_model(None))
    sets = validation_version_sets(args.store, real_csv=args.real_versions)
    for name, vs in sets.items():
        t0 = time.time()
        flat = flatten(vs.songs)
        x = np.concatenate([embed(b) for b in flat.batches(None, 1024)])
        fwd, rev = file_distances(x, flat.starts)
        _, gid = np.unique(np.asarray(vs.group), return_inverse=True)
        query_files = np.nonzero(np.bincount(gid)[gid] >= 2)[0]
        others = fwd + np.diag(np.full(len(fwd), np.inf, dtype=np.float32))
        rules = {"D (the rule)": fwd, "sym": (fwd + rev) / 2}
        for k in (5, 20):
            r = np.sort(others, axis=1)[:, :k].mean(axis=1)  # r(c): as a query, c's k nearest files
            for a in (0.5, 1.0):
                rules[f"csls K={k} a={a}"] = fwd - a * r[None, :]
        print(f"\n{name} ({len(query_files)} queries, {len(vs.songs)} files; {time.time() - t0:.0f} s)")
        print("| rule | Hit@1 / Hit@10 / MRR |\n|---|---|")
        for rule, d in rules.items():
            s = summarise(other_version_ranks(d[query_files].astype(np.float64), query_files, gid, tol=1e-6))
            print(f"| {rule} | {s['hit@1']:.3f} / {s['hit@10']:.3f} / {s['mrr']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
