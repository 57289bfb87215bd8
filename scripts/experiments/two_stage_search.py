"""Experiment: choose the search head's settings (bar weight, coarse dims, shortlist) on validation.

Two-stage search as :mod:`midivae.model.search_head` defines it: scan the first ``coarse_dims``
columns of the rotated unit posterior mean, re-rank the ``shortlist`` nearest by the whole search
vector (rotated mean + ``bar_weight`` x per-bar deviations). The rotation is fitted on train-split
phrases. Prints excerpt Hit@1/MRR, phrase and song Hit@1 per alteration (robustness, any-key for
the transpositions) and piano->guitar, all on the validation split.

    python scripts/experiments/two_stage_search.py --store /tmp/lpdstore [--checkpoint CKPT]

Session 4 figures are in docs/model_selection.md ("Two-stage search").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, chroma_vectors, raw
from midivae.evaluate.data import flatten, load_store_split
from midivae.evaluate.embedding import Embedding
from midivae.model.search_head import SearchHead, fit_basis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--configs", default="0:128:0,0.3:128:0,0.3:32:100,0.3:64:100,0.5:32:100",
                    help="bar_weight:coarse_dims:shortlist, comma-separated (shortlist 0: one exact scan)")
    ap.add_argument("--any-key", action="store_true")
    ap.add_argument("--cost", action="store_true", help="also time each setting's query against raw_cosine's dense scan")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = midivae.load_model(args.checkpoint)
    val = load_store_split(args.store, "validation", None)
    fit = flatten(load_store_split(args.store, "train", 300, seed=0))
    basis = fit_basis(model.encode_mean(np.concatenate(list(fit.batches(None, 256)))))
    enc = CachedEncoder(model)  # one encoder pass per batch, shared by every setting

    def parts(p: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return enc.encode(p)[0], enc.bars(p)

    queries = T.altered_queries(val, args.queries, seed=0)
    raw_ms = T.cost(val, raw(True))["query_ms_dense"] if args.cost else float("nan")
    print(f"raw_cosine dense scan: {raw_ms:.1f} ms per query")
    print("| bar weight | coarse dims | shortlist [: chroma weight, m = pitched merged] | excerpt Hit@1 | MRR | phrase Hit@1 (drop20, shift6, p->g, +2, -3) | worst song Hit@1 | query ms | x below raw_cosine |")
    print("|---|---|---|---|---|---|---|---|---|")
    def chroma(p: np.ndarray, merged: bool) -> np.ndarray:
        if merged:  # drums, piano + guitar + strings, bass
            p = np.stack([p[..., 0], p[..., 1] | p[..., 2] | p[..., 4], p[..., 3]], axis=-1)
        v = chroma_vectors(p)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    for spec in args.configs.split(","):
        w, c, k, *extra = spec.split(":")
        head = SearchHead(basis, float(w), int(c), int(k), fingerprint_hashes=0)  # fingerprints: see fingerprint_search.py
        beta = float(extra[0].rstrip("m")) if extra else 0.0
        merged = bool(extra) and extra[0].endswith("m")

        def embed(p: np.ndarray, h: SearchHead = head, b: float = beta, m: bool = merged) -> np.ndarray:
            v = h.vectors(*parts(p))
            return np.concatenate([v, b * chroma(p, m)], 1).astype(np.float32) if b else v

        emb = Embedding(spec, embed, "cosine", 0, 0, kind="model",
                        coarse_dims=head.coarse_dims, shortlist=head.shortlist)
        e = T.excerpt_retrieval(val, emb)
        r = T.robustness(val, emb, queries=queries, any_key=args.any_key)
        names = [n for n in ("drop_20pct_notes", "shift_eighth", "piano_to_guitar", "transpose_up_2", "transpose_down_3")
                 if f"{n}/phrase_hit1" in r]
        ph = ", ".join(f"{r[f'{n}/phrase_hit1']:.3f}" for n in names)
        song = min(r.get(f"{n}/song_hit1_anykey", r[f"{n}/song_hit1"]) for n in names)
        ms = T.cost(val, emb)["query_ms"] if args.cost else float("nan")
        print(f"| {spec} | {c} | {k or '-'} | {e['hit@1']:.3f} | {e['mrr']:.3f} | {ph} | {song:.3f} | {ms:.3f} | {raw_ms / ms:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
