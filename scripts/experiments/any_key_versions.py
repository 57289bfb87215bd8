"""Experiment: version identification searching the query file in all 12 keys (any-key).

Half of the generated re-renderings are transposed (1-5 semitones), and real transcriptions of one
song are sometimes written in another key. The version task searches the query file as written.
This scores each query file's song distance (the mean over its phrases of the nearest distance in
the candidate) in its own key and as the minimum over the 12 transpositions of the query
(``ANY_KEY_SHIFTS``, as ``--any-key`` searches), for the shipped model's song-free search vectors
(exact cosine, no two-stage search), on the validation split's ``hard`` and ``hard-drums``
re-renderings among all the store's songs and on the real versions.

    python scripts/experiments/any_key_versions.py --store /tmp/lpdstore [--real-versions DIR/versions.csv]

Figures: docs/model_selection.md ("Versions in any key").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate.alterations import ANY_KEY_SHIFTS, transpose
from midivae.evaluate.baselines import song_free_embed
from midivae.evaluate.data import flatten
from midivae.evaluate.metrics import summarise
from midivae.evaluate.tasks import other_version_ranks
from midivae.evaluate.versions import validation_version_sets

CHUNK = 1024


def file_distances(embed, query_phrases: np.ndarray, qstarts: np.ndarray, qlen: np.ndarray, x: np.ndarray,
                   file_starts: np.ndarray) -> np.ndarray:
    """(query files, files): mean over each query file's phrases of the nearest cosine distance."""
    q = embed(query_phrases)
    near = np.empty((len(q), len(file_starts)), dtype=np.float32)
    for a in range(0, len(q), CHUNK):
        near[a : a + CHUNK] = np.minimum.reduceat(1.0 - q[a : a + CHUNK] @ x.T, file_starts, axis=1)
    return np.add.reduceat(near, qstarts, axis=0) / qlen[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    args = ap.parse_args()
    torch.set_num_threads(2)
    embed = song_free_embed(midivae.load_model(None))
    sets = validation_version_sets(args.store, real_csv=args.real_versions)
    print("| set | own key: Hit@1 / Hit@10 / MRR | any key | queries better / worse |\n|---|---|---|---|")
    for name, vs in sets.items():
        t0 = time.time()
        flat = flatten(vs.songs)
        x = np.concatenate([embed(b) for b in flat.batches(None, 1024)])
        _, gid = np.unique(np.asarray(vs.group), return_inverse=True)
        query_files = np.nonzero(np.bincount(gid)[gid] >= 2)[0]
        qph = [vs.songs[i].phrases for i in query_files]
        qlen = np.array([len(p) for p in qph])
        qstarts = np.r_[0, np.cumsum(qlen)[:-1]]
        qph = np.concatenate(qph)
        per_shift = [file_distances(embed, transpose(qph, s) if s else qph, qstarts, qlen, x, flat.starts)
                     for s in ANY_KEY_SHIFTS]
        own = per_shift[ANY_KEY_SHIFTS.index(0)]
        any_key = np.min(per_shift, axis=0)
        ranks = [other_version_ranks(d.astype(np.float64), query_files, gid, tol=1e-6) for d in (own, any_key)]
        a, b = (summarise(r) for r in ranks)
        ra, rb = (r["rr"] for r in ranks)  # reciprocal ranks: larger is better
        print(f"| {name} ({len(query_files)} queries, {len(vs.songs)} files) | "
              f"{a['hit@1']:.3f} / {a['hit@10']:.3f} / {a['mrr']:.3f} | {b['hit@1']:.3f} / {b['hit@10']:.3f} / {b['mrr']:.3f} | "
              f"{(rb > ra).sum()} / {(rb < ra).sum()} |  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
