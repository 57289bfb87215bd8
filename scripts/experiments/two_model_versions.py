"""Experiment: two models as one song-free space for version queries (the mean of their cosines).

The drum-view fine-tune finds versions with another drum part better and drum-keeping versions
worse than the shipped model (docs/model_selection.md). Concatenating both models' unit song-free
vectors (divided by sqrt 2) makes one cosine that is the mean of the two; this scores the
validation split's ``hard`` and ``hard-drums`` re-renderings among all the store's songs and the
real queries with each model alone and with the pair (exact scores, no two-stage search).

    python scripts/experiments/two_model_versions.py --store /tmp/lpdstore --checkpoint CKPT \
        [--real-versions DIR/versions.csv]

Figures: docs/model_selection.md ("Two models as one space").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import song_free_embed
from midivae.evaluate.embedding import Embedding
from midivae.evaluate.versions import validation_version_sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", required=True, help="the second model (the first is the shipped one)")
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    args = ap.parse_args()
    torch.set_num_threads(2)
    first, second = song_free_embed(midivae.load_model(None)), song_free_embed(midivae.load_model(args.checkpoint))
    methods = {"shipped": first, "second": second,
               "both": lambda ph: np.concatenate([first(ph), second(ph)], axis=1) / np.sqrt(2.0)}
    sets = validation_version_sets(args.store, real_csv=args.real_versions)
    print("| set | model | Hit@1 / Hit@10 / MRR |\n|---|---|---|")
    for set_name, vs in sets.items():
        for name, embed in methods.items():
            t0 = time.time()
            r = T.version_identification(vs, Embedding(name, embed, "cosine", -1, -1))
            print(f"| {set_name} ({vs.n_queries} queries, {len(vs.songs)} files) | {name} | "
                  f"{r['hit@1']:.3f} / {r['hit@10']:.3f} / {r['mrr']:.3f} |  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
