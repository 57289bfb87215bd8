"""Evaluation benchmark: the ranking tasks' query chunks on one thread and on several.

``midivae evaluate`` compares chunks of query phrases against the whole collection; at the
held-out version check's size (~4,000 files, ~70,000 phrases) that took an hour and a half on 2
cores with every baseline, most of it in scipy's single-threaded sparse products for the raw
baselines. The chunks now run on threads (:mod:`midivae.evaluate.parallel`). This times the
version-identification and excerpt tasks per method with one thread and with the default count,
side by side in one run, and checks that both give the same metrics.

Usage::

    python benchmarks/evaluate.py                  # 1,000 LPD-5 songs, 500 re-rendered (~10 min on 2 cores)
    python benchmarks/evaluate.py --songs 300      # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import make_baselines, model_embeddings
from midivae.evaluate.data import load_eval_data
from midivae.evaluate.parallel import thread_count, threads
from midivae.evaluate.run import cpu_flags
from midivae.evaluate.versions import VERSION_PRESETS, generated_versions


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in cpu_flags().items())
    return f"{model}; {os.cpu_count()} CPUs; {flags}"


def timed(run):
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MIDIVAE_DATA", "../shared/data")) / "lpd5" / "lpd_5_cleansed")
    ap.add_argument("--songs", type=int, default=1000, help="LPD-5 songs (half of them also re-rendered)")
    ap.add_argument("--methods", default="model,raw_cosine,chroma")
    ap.add_argument("--threads", type=int, default=None, help="the parallel run's threads (default: as evaluate)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the version folder is written (default: the system's)")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    songs = load_eval_data(args.data, args.songs, None, 0, 0).test
    names = args.methods.split(",")
    methods = [m for m in (model_embeddings(_shipped())[:1] if "model" in names else []) if m.name in names]
    methods += make_baselines([], 64, [n for n in names if n != "model"])
    many = args.threads or thread_count()
    with tempfile.TemporaryDirectory(prefix="midivae-bench-", dir=args.tmp) as tmp:
        versions = generated_versions(songs, Path(tmp), len(songs) // 2, 0, VERSION_PRESETS["hard-drums"])
        print(f"data: {len(songs)} songs; versions: {len(versions.songs)} files, {versions.n_queries} queries")
        rows = []
        for emb in methods:
            vecs = T.embed_flat(emb, T.flatten(songs))
            for task, run in (("versions", lambda: T.version_identification(versions, emb)),
                              ("excerpt", lambda: T.excerpt_retrieval(songs, emb, vectors=vecs))):
                with threads(1):
                    one, r1 = timed(run)
                with threads(many):
                    par, rn = timed(run)
                same = all(np.isclose(r1[k], rn[k], equal_nan=True) for k in r1)
                rows.append((emb.name, task, one, par, one / par, same))
                print(f"  .. {emb.name} {task}: {one:.1f} s / {par:.1f} s", flush=True)
    print(f"\n| method | task | 1 thread s | {many} threads s | speed-up | same metrics |")
    print("|---|---|---|---|---|---|")
    for name, task, one, par, ratio, same in rows:
        print(f"| {name} | {task} | {one:.1f} | {par:.1f} | {ratio:.2f}x | {'yes' if same else '**no**'} |")


def _shipped():
    from midivae.model.api import load_model

    return load_model(None)


if __name__ == "__main__":
    main()
