"""Exact-scan benchmark: the cost task's plain scan against its prefix-bound scan, per dense method.

The cost task times each method's exact single-query top-100 search and compares it with the raw
pianoroll's dense scan (issue 5: >= 1,000x cheaper for every model row). A plain scan of a short
vector is memory-bound, so its ratio to the raw scan tends to the ratio of their bytes (80,640 /
128 floats = 630x for the 128-dim posterior means of the `model_l2` row). The prefix-bound scan
(`midivae.evaluate.tasks.PrefixBoundScan`) finds the same nearest rows reading most of them in
part only. This times both, and the raw dense scan, on the same queries in one run, at several
collection sizes (the shared LPD-5 songs; beyond them, each phrase vector again with 5% noise).

Usage::

    python benchmarks/exact_scan.py                 # model_l2, pca, chroma at 3,828 / 27,151 / 108,604 phrases
    python benchmarks/exact_scan.py --methods model_l2 --sizes 3828 27151
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from midivae.evaluate.baselines import make_baselines, model_embeddings
from midivae.evaluate.data import flatten, load_folder
from midivae.evaluate.metrics import prepare
from midivae.evaluate.parallel import one_blas_thread
from midivae.evaluate.tasks.chunks import embed_flat
from midivae.evaluate.tasks.timing import (QUERY_K, ExactScan, PrefixBoundScan, _fastest_layout, _scan_ms,
                                           _seconds_per_call, raw_dense_rows)

from evaluate import machine  # noqa: E402  (benchmarks/ is the script's folder)


def grown(v: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows: ``v``'s first ones, or ``v`` again and again with 5% multiplicative noise."""
    if n <= len(v):
        return v[:n]
    extra = [v * (1 + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for _ in range(-(-n // len(v)) - 1)]
    return np.concatenate([v, *extra])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MIDIVAE_DATA", "../shared/data")) / "lpd5/lpd_5_cleansed")
    ap.add_argument("--methods", nargs="+", default=["model_l2", "pca", "chroma"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[3828, 27151, 108604])
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    data = load_folder(args.data, None, 200)
    flat = flatten(data.test)
    print(f"{len(data.test)} songs, {len(flat)} phrases; top-{QUERY_K}, one query at a time, one thread")
    from midivae.model.api import load_model

    methods = {e.name: e for e in model_embeddings(load_model(None)) + make_baselines(data.fit, 128, ("pca", "chroma"), 0)}
    rng = np.random.default_rng(0)
    queries_at = rng.choice(len(flat), size=args.queries, replace=False)
    phrases = np.concatenate(list(flat.batches(np.sort(queries_at), 256)))
    print("| method | phrases | plain ms | prefix-bound ms | speed-up | raw dense ms | plain: x raw | prefix: x raw | same nearest |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.methods:
        emb = methods[name]
        vecs = np.asarray(embed_flat(emb, flat), np.float32)
        q = prepare(embed_flat(emb, flatten(data.test), np.sort(queries_at)), emb.distance).vectors
        for n in args.sizes:
            x = prepare(grown(vecs, n, rng), emb.distance)
            raw_rows, raw_q = raw_dense_rows(flat, phrases)
            with one_blas_thread():
                def plain_layout(column_major: bool) -> float:
                    scan = ExactScan.of(x.vectors, x.sq_norms, emb.distance, column_major)
                    return _seconds_per_call(lambda i: scan.top_k(q[i], QUERY_K), len(q))

                pruned = PrefixBoundScan.of(x.vectors)
                plain = _fastest_layout(plain_layout) * 1000
                prefix = _seconds_per_call(lambda i: pruned.top_k(q[i], QUERY_K), len(q)) * 1000
                raw = _scan_ms(raw_rows, np.ones(len(raw_rows), np.float32), "cosine", raw_q, n)
            scan = ExactScan.of(x.vectors, x.sq_norms, emb.distance, False)
            true = lambda i, rows: np.sort(((x.vectors[rows] - q[i]) ** 2).sum(axis=1))  # noqa: E731
            same = all(np.allclose(true(i, scan.top_k(q[i], QUERY_K)), true(i, pruned.top_k(q[i], QUERY_K)[0]), atol=1e-4)
                       for i in range(len(q)))
            print(f"| {name} | {n:,} | {plain:.3f} | {prefix:.3f} | {plain / prefix:.2f}x | {raw:.1f} | "
                  f"{raw / plain:,.0f}x | {raw / prefix:,.0f}x | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
