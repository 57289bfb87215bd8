"""Experiment: how version-identification Hit@1 falls as the collection grows.

The held-out check searches real transcriptions among ~4,000 files; the store gives 2,202. This
builds the calibrated generated set once (the test split's songs re-rendered with a preset,
``hard-drums`` by default, evaluate.versions), then searches the same 404 query files among
growing random subsets of the other songs, and fits Hit@1 against log(files) to read off 4,000.

    python scripts/experiments/versions_by_size.py --store /tmp/lpdstore [--checkpoint CKPT ...] [--baselines]

Figures: docs/model_selection.md ("Versions by collection size").
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, chroma, model_embedding, raw
from midivae.evaluate.data import load_store_split_first
from midivae.evaluate.versions import VERSION_PRESETS, VersionSet, generated_versions

TARGET_FILES = 4000


def subset(vs: VersionSet, n_versioned: int, n_distractors: int, rng: np.random.Generator) -> VersionSet:
    """The first ``2 * n_versioned`` files (each versioned song and its re-rendering) plus a random
    ``n_distractors`` of the rest."""
    keep_q = 2 * n_versioned
    rest = np.arange(keep_q, len(vs.songs))
    picked = np.sort(rng.choice(rest, size=min(n_distractors, len(rest)), replace=False))
    rows = np.concatenate([np.arange(keep_q), picked])
    return VersionSet([vs.songs[i] for i in rows], [vs.group[i] for i in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", action="append", default=None,
                    help="a model to search with, repeatable ('shipped': the shipped one, the default)")
    ap.add_argument("--preset", default="hard-drums", choices=sorted(VERSION_PRESETS))
    ap.add_argument("--sizes", default="200,500,1000,1798", help="distractor counts")
    ap.add_argument("--baselines", action="store_true", help="also raw cosine and chroma (slow)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    songs, n_first = load_store_split_first(args.store, "test")
    folder = Path(tempfile.mkdtemp(prefix="midivae-versions-")) / args.preset
    vs = generated_versions(songs, folder, n_first, 0, VERSION_PRESETS[args.preset])
    counts = collections.Counter(vs.group)
    order = sorted(range(len(vs.songs)), key=lambda i: counts[vs.group[i]] < 2)  # versioned first
    vs = VersionSet([vs.songs[i] for i in order], [vs.group[i] for i in order])
    n_versioned = vs.n_queries // 2
    rows = []
    for path in args.checkpoint or ["shipped"]:
        model = midivae.load_model(None if path == "shipped" else path)
        rows.append((f"model {getattr(model, 'checkpoint_id', '')[:8]}",
                     model_embedding(model, "model", "cosine", CachedEncoder(model))))
    if args.baselines:
        rows += [("raw_cosine", raw(True)), ("chroma", chroma())]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.preset}: {vs.n_queries} queries; files = {2 * n_versioned} + distractors")
    print("| method | " + " | ".join(f"{2 * n_versioned + s} files" for s in sizes) + f" | fit at {TARGET_FILES} |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name, emb in rows:
        t, hits, files = time.time(), [], []
        for s in sizes:
            sub = subset(vs, n_versioned, s, np.random.default_rng(s))
            hits.append(T.version_identification(sub, emb)["hit@1"])
            files.append(len(sub.songs))
        slope, intercept = np.polyfit(np.log(files), hits, 1)
        at = slope * np.log(TARGET_FILES) + intercept
        print(f"| {name} | " + " | ".join(f"{h:.3f}" for h in hits) + f" | {at:.3f} |  ({time.time() - t:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
