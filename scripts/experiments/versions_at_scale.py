"""Experiment: version identification among all the store's songs (~2,200 files), not one split.

Every song of the store is written as MIDI; the test split's songs also get a generated
re-rendering (``hard-drums``, ``hard`` and ``basic`` presets, evaluate.versions): 404 queries among 2,202 files,
closer to the held-out check's ~4,000 files than the report's 302. Model, raw cosine, chroma.

    python scripts/experiments/versions_at_scale.py --store /tmp/lpdstore

Figures: docs/model_selection.md ("Queries of several phrases").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, chroma, model_embedding, raw
from midivae.evaluate.data import load_store_split_first
from midivae.evaluate.versions import VERSION_PRESETS, generated_versions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = midivae.load_model(args.checkpoint)
    songs, n_first = load_store_split_first(args.store, "test")
    tmp = Path(tempfile.mkdtemp(prefix="midivae-versions-"))
    t = time.time()
    for preset in ("hard-drums", "hard", "basic"):
        folder = tmp / preset
        vs = generated_versions(songs, folder, n_first, 0, VERSION_PRESETS[preset])
        print(f"{preset}: {len(vs.songs)} files, {vs.n_queries} queries ({time.time() - t:.0f} s)", flush=True)
        for name, emb in (("model", model_embedding(model, "model", "cosine", CachedEncoder(model))),
                          ("raw_cosine", raw(True)), ("chroma", chroma())):
            r = T.version_identification(vs, emb)
            print(f"  {name:12s} Hit@1 {r['hit@1']:.3f} Hit@10 {r['hit@10']:.3f} MRR {r['mrr']:.3f}", flush=True)


if __name__ == "__main__":
    main()
