"""Experiment (not part of the package): does bar order in the search vector fix the phrase-level misses?

The retrieval VAE's latent is a *mean* over bars, so a phrase and a bar-shifted repeat of it land
almost on the same point; the phrase-level robustness misses (an altered phrase finds another
phrase of its song first) all look like that. This probe keeps the model as it is and appends,
to the unit posterior mean, ``alpha`` times the per-bar deviations of the content latent
(``to_stats`` of each bar's features minus their mean, scaled by the mean's norm), optionally
projected to fewer dims by a PCA fitted on train-split phrases. It prints excerpt Hit@1/MRR and
phrase Hit@1 per alteration on the validation split (no any-key).

    python scripts/experiments/bar_order_probe.py --store /tmp/lpdstore [--checkpoint CKPT]

Session 3 figures are in docs/model_selection.md ("Bar order in the search vector").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import midivae
from midivae.constants import BARS_PER_PHRASE
from midivae.evaluate import tasks as T
from midivae.evaluate.data import flatten, load_store_split
from midivae.evaluate.embedding import Embedding
from midivae.model.retrieval import pool_bars


def per_bar_parts(net, phrases: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means ``(n, latent)`` and per-bar content means ``(n, 4, content)``."""
    k = net.config.content_dim
    mus, bars = [], []
    with torch.inference_mode():
        for i in range(0, len(phrases), batch):
            x = torch.from_numpy(np.ascontiguousarray(phrases[i : i + batch]).view(np.uint8))
            pooled = pool_bars(x)
            mus.append(net._encode_pooled(pooled)[0].numpy())
            # the content stats are linear in the bar features: each bar's own share of mu
            h = net.bar_encoder(pooled).reshape(x.shape[0], BARS_PER_PHRASE, -1)
            bars.append(net.to_stats(h)[..., :k].numpy())
    return np.concatenate(mus), np.concatenate(bars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--alphas", default="0,0.15,0.3,0.5")
    ap.add_argument("--pca-dims", default="0,32,64", help="0: all per-bar dims")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = midivae.load_model(args.checkpoint).vae
    val = load_store_split(args.store, "validation", None)
    fit = flatten(load_store_split(args.store, "train", 300, seed=0))
    _, fit_bars = per_bar_parts(net, np.concatenate(list(fit.batches(None, 256))))
    resid = (fit_bars - fit_bars.mean(1, keepdims=True)).reshape(len(fit_bars), -1)
    _, _, vt = np.linalg.svd(resid - resid.mean(0), full_matrices=False)

    def embedding(alpha: float, dims: int) -> Embedding:
        def embed(p: np.ndarray) -> np.ndarray:
            mu, bars = per_bar_parts(net, p)
            scale = np.linalg.norm(bars.mean(1), axis=1)[:, None, None] + 1e-9
            r = ((bars - bars.mean(1, keepdims=True)) / scale).reshape(len(p), -1)
            if dims:
                r = r @ vt[:dims].T
            mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
            return np.concatenate([mu, alpha * r], 1).astype(np.float32)

        return Embedding(f"a{alpha}_d{dims}", embed, "cosine", 0, 0, kind="model")

    print("| alpha | per-bar dims | excerpt Hit@1 | MRR | phrase Hit@1 per alteration |")
    print("|---|---|---|---|---|")
    for alpha in map(float, args.alphas.split(",")):
        for dims in map(int, args.pca_dims.split(",")):
            if alpha == 0 and dims:
                continue
            emb = embedding(alpha, dims)
            e = T.excerpt_retrieval(val, emb)
            r = T.robustness(val, emb, n_queries=args.queries, any_key=False)
            ph = {k.split("/")[0]: round(v, 3) for k, v in r.items() if k.endswith("phrase_hit1")}
            print(f"| {alpha} | {dims or 'all'} | {e['hit@1']:.3f} | {e['mrr']:.3f} | {ph} |", flush=True)


if __name__ == "__main__":
    main()
