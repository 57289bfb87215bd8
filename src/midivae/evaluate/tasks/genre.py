"""Task 4: genre consistency of song vectors (the mean of each song's phrase vectors)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from midivae.evaluate.data import Flat, SongPhrases, as_songs, flatten
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding
from midivae.evaluate.metrics import pairwise, prepare, tie_tolerance
from midivae.evaluate.tasks.chunks import embed_flat


def song_vectors(flat: Flat, vectors, distance: str):
    """One vector per song: the mean of its phrase vectors (unit vectors first, for cosine)."""
    import scipy.sparse as sp

    p = prepare(vectors, distance)  # normalised for cosine
    n_songs = len(flat.starts)
    counts = np.bincount(flat.song, minlength=n_songs).astype(np.float64)
    avg = sp.csr_matrix((1.0 / counts[flat.song], (flat.song, np.arange(len(flat)))), shape=(n_songs, len(flat)))
    out = avg.astype(np.float32) @ p.vectors
    return sp.csr_matrix(out) if sp.issparse(out) else np.asarray(out, dtype=np.float32)


def genre_consistency(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    labels: dict[str, str],
    k: int = 10,
    vectors=None,
    seed: int = 0,
) -> dict[str, float]:
    """Song vectors of the labelled songs: precision@k of same-genre neighbours and
    leave-one-out k-NN balanced accuracy (expected vote; ties shared), beside the majority
    rate, chance, and what this embedding reaches with the labels shuffled over its songs (the
    95th percentile of 200 shuffles); and the genre-balanced same-genre AUC over each song's
    whole ranking (:func:`~midivae.evaluate.metrics.same_label_auc`), which still shows a
    grouping where classes are too small for a 10-NN vote to turn. ``labels``: song id -> genre
    (songs with exactly one label)."""
    from midivae.evaluate.metrics import (balanced_accuracy, knn_vote, knn_weights, precision_at_k, same_label_auc,
                                          shuffled_label_band)

    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s) and s.song_id in labels]
    if len(songs) < k + 1:
        return {"n_songs": len(songs), "skipped": f"fewer than {k + 1} labelled songs"}  # type: ignore[dict-item]
    flat = flatten(songs)
    vecs = embed_flat(emb, flat) if vectors is None else vectors
    if emb.song_dims:
        vecs = vecs[:, : emb.song_dims]
    sv = prepare(song_vectors(flat, vecs, emb.distance), emb.distance)
    d = pairwise(sv, sv)
    np.fill_diagonal(d, np.inf)
    tol = tie_tolerance(sv, sv)
    names = sorted({labels[s.song_id] for s in songs})
    y = np.array([names.index(labels[s.song_id]) for s in songs])
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    weights = knn_weights(d, k, tol)
    prob = knn_vote(d, y, len(names), k, weights=weights)
    counts = np.bincount(y, minlength=len(names))
    band = shuffled_label_band(d, y, len(names), k, seed=seed, weights=weights)
    auc = same_label_auc(d, y, seed=seed)
    return {
        "balanced_knn_accuracy": balanced_accuracy(prob, y),
        f"precision@{k}": float(precision_at_k(d, same, k, weights=weights).mean()),
        "knn_accuracy": float(prob[np.arange(len(y)), y].mean()),
        "chance_balanced": 1.0 / len(names),
        "majority_rate": float(counts.max() / len(y)),
        f"chance_precision@{k}": float(((counts[y] - 1) / (len(y) - 1)).mean()),
        "shuffled95_balanced": band["balanced"],
        f"shuffled95_precision@{k}": band[f"precision@{k}"],
        "same_genre_auc": auc["auc"],
        "shuffled95_auc": auc["shuffled95"],
        "n_songs": len(songs),
        "n_genres": len(names),
    }
