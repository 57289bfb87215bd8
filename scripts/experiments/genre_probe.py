"""Experiment: is there genre in any song vector at this data size, and can training labels lift it?

The genre task's balanced 10-NN accuracy sits at chance for every method on the shared songs.
This probe looks at why, on the labelled songs of a store's train and validation splits (the
test split is not touched): per-genre recall of the 10-NN vote, the lift of same-genre songs
among each song's 30 nearest (their share over the genre's share), and song vectors mapped
before the search by what training labels or statistics can fit: centring, PCA whitening, and a
class-balanced shrinkage LDA, each fitted on half of the labelled training songs (by a hash of
the song id) and scored on the other half with the validation songs. Session 11 adds the
same-genre AUC (every pair of a song's ranking, so it has signal where a 10-NN vote has none).

    python scripts/experiments/genre_probe.py --store /tmp/lpdstore

Figures: docs/model_selection.md ("Genre at this data size").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.linalg as sl
import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import make_baselines, model_embeddings
from midivae.evaluate.data import flatten, hash_fraction, load_store_split
from midivae.evaluate.labels import single_genre_labels
from midivae.evaluate.metrics import (balanced_accuracy, knn_vote, pairwise, precision_at_k, prepare, same_label_auc,
                                      tie_tolerance)

METHODS = ("model", "model_l2", "raw_cosine", "chroma", "pca", "bag_of_bars", "random")


def song_vectors(emb, flat) -> np.ndarray:
    v = T.embed_flat(emb, flat)
    if emb.song_dims:
        v = v[:, : emb.song_dims]
    sv = T.song_vectors(flat, v, emb.distance)
    return np.asarray(sv.toarray() if hasattr(sv, "toarray") else sv, dtype=np.float64)


def genre_scores(sv: np.ndarray, distance: str, y: np.ndarray, k: int = 10) -> dict[str, object]:
    """Balanced k-NN accuracy, precision@k and the same-genre AUC as the genre task computes them,
    per-genre recall and lift@30."""
    p = prepare(sv.astype(np.float32), distance)
    d = pairwise(p, p)
    np.fill_diagonal(d, np.inf)
    tol = tie_tolerance(p, p)
    n_classes = int(y.max()) + 1
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    prob = knn_vote(d, y, n_classes, k, tol)
    counts = np.bincount(y, minlength=n_classes)
    near = np.argsort(d, axis=1)[:, :30]
    present = [c for c in range(n_classes) if counts[c] > 1]
    return {
        "auc": same_label_auc(d, y),
        "balanced": balanced_accuracy(prob, y),
        "p@10": float(precision_at_k(d, same, k, tol).mean()),
        "recall": {c: float(prob[y == c, c].mean()) for c in present},
        "lift30": {c: float((y[near[y == c]] == c).mean() / ((counts[c] - 1) / (len(y) - 1))) for c in present},
    }


def lda(x: np.ndarray, y: np.ndarray, shrink: float) -> np.ndarray:
    """Class-balanced LDA directions (every genre weighs the same), within-class scatter shrunk to its trace."""
    classes = [c for c in np.unique(y) if (y == c).sum() > 1]
    means = np.array([x[y == c].mean(0) for c in classes])
    within = sum(np.cov(x[y == c].T, bias=True) for c in classes) / len(classes)
    within = (1 - shrink) * within + shrink * np.trace(within) / len(within) * np.eye(len(within))
    w, vecs = sl.eigh(np.cov(means.T, bias=True), within)
    return vecs[:, np.argsort(-w)[: len(classes) - 1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, val = load_store_split(args.store, "train", None), load_store_split(args.store, "validation", None)
    labels = single_genre_labels([s.song_id for s in train + val])
    songs = [s for s in train + val if s.song_id in labels and len(s)]
    n_train = sum(1 for s in train if s.song_id in labels and len(s))
    names = sorted({labels[s.song_id] for s in songs})
    y = np.array([names.index(labels[s.song_id]) for s in songs])
    fit_half = np.array([i < n_train and hash_fraction(s.song_id) < 0.5 for i, s in enumerate(songs)])
    held = np.nonzero(~fit_half)[0]
    counts = np.bincount(y, minlength=len(names))
    print(f"{len(songs)} labelled songs ({n_train} train, {len(songs) - n_train} validation); "
          + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    print(f"mapped rows: fitted on {fit_half.sum()} training songs, scored on the other {len(held)}")
    model = midivae.load_model(None)
    unlabelled = [s for s in train if s.song_id not in labels][:200]
    embs = {e.name: e for e in model_embeddings(model) + make_baselines(unlabelled, int(model.latent_dim), METHODS[2:])}
    flat = flatten(songs)
    print("\n| method | all: balanced / p@10 | all: same-genre AUC (shuffled 95%) | held half: plain | centred "
          "| whitened 16 | LDA s=0.1 / 0.5 / 0.9 |")
    print("|---|---|---|---|---|---|---|")
    shown = {}
    for name in METHODS:
        emb = embs[name]
        sv = song_vectors(emb, flat)
        whole = genre_scores(sv, emb.distance, y)
        shown[name] = whole
        cells = [f"{whole['balanced']:.3f} / {whole['p@10']:.3f}",
                 f"{whole['auc']['auc']:.3f} ({whole['auc']['shuffled95']:.3f})"]
        yh = np.unique(y[held], return_inverse=True)[1]
        plain = genre_scores(sv[held], emb.distance, yh)
        cells.append(f"{plain['balanced']:.3f} / {plain['p@10']:.3f}")
        if sv.shape[1] > 5000:  # the pianoroll baselines: plain only
            cells += ["", "", ""]
        else:
            x = sv / np.maximum(np.linalg.norm(sv, axis=1, keepdims=True), 1e-12) if emb.distance == "cosine" else sv
            centred = x - x[fit_half].mean(0)
            _, s, vt = np.linalg.svd(centred[fit_half], full_matrices=False)
            mapped = [centred, centred @ vt[:16].T / s[:16]]
            mapped += [centred @ lda(centred[fit_half], y[fit_half], sh) for sh in (0.1, 0.5, 0.9)]
            got = [genre_scores(m[held], "cosine", yh) for m in mapped]
            cells += [f"{g['balanced']:.3f} / {g['p@10']:.3f}" for g in got[:2]]
            cells.append(" / ".join(f"{g['balanced']:.3f}" for g in got[2:]))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    chance = ((counts[y] - 1) / (len(y) - 1)).mean()
    print(f"\nchance: balanced {1 / (counts > 0).sum():.3f}, p@10 {chance:.3f}")
    print("\nper genre, all labelled songs: 10-NN recall (lift@30)")
    print("| method | " + " | ".join(names[c] for c in shown["model"]["recall"]) + " |")
    print("|---|" + "---|" * len(shown["model"]["recall"]))
    for name, g in shown.items():
        print(f"| {name} | " + " | ".join(f"{g['recall'][c]:.2f} ({g['lift30'][c]:.1f})" for c in g["recall"]) + " |")


if __name__ == "__main__":
    main()
