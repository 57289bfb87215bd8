"""Experiment: the version task's song-distance rule, mean over all query phrases or a trimmed mean.

Real transcriptions of one song differ in form: an intro, a solo or a last chorus that one file
has and the other lacks. The mean over *every* query phrase of its nearest distance in the
candidate charges such a part in full; a trimmed mean leaves out the query's worst share of
phrases. Judged on the validation split (choose on validation, report on test): its 200 songs
re-rendered (``hard`` and ``hard-drums``) searched among all the store's songs (~2,400 files),
and the 4 real queries of ``real_versions.py``.

    python scripts/experiments/trimmed_rule.py --store /tmp/lpdstore --real-versions DIR/versions.csv

Figures: docs/model_selection.md ("The song-distance rule").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, chroma, model_embedding, raw
from midivae.evaluate.versions import validation_version_sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--trims", default="0,0.1,0.25,0.5", help="shares of the query's phrases left out")
    ap.add_argument("--presets", default="hard,hard-drums")
    ap.add_argument("--real-versions", type=Path, default=None, help="CSV (file,song) of real MIDI versions")
    ap.add_argument("--baselines", action="store_true", help="also raw cosine and chroma")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = midivae.load_model(args.checkpoint)
    methods = [("model", model_embedding(model, "model", "cosine", CachedEncoder(model)))]
    if args.baselines:
        methods += [("raw_cosine", raw(True)), ("chroma", chroma())]
    trims = [float(t) for t in args.trims.split(",")]
    found = validation_version_sets(args.store, args.presets.split(","), args.real_versions)
    sets = {("real (4 queries)" if k == "real" else f"{k}, validation"): vs for k, vs in found.items()}
    print("| set | method | " + " | ".join(f"trim {t:g}" for t in trims) + " |")
    print("|---|---|" + "---|" * len(trims))
    for set_name, vs in sets.items():
        for name, emb in methods:
            t0 = time.time()
            cells = []
            for trim in trims:
                r = T.version_identification(vs, emb, trim=trim)
                cells.append(f"{r['hit@1']:.3f} / {r['mrr']:.3f}")
            print(f"| {set_name} ({vs.n_queries} q, {len(vs.songs)} files) | {name} | " + " | ".join(cells)
                  + f" |  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
