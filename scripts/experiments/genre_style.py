"""Experiment: do the style statistics (instrumentation, densities, registers, tempo) carry genre?

Genre is a matter of style more than of notes, so the song's mean style statistics
(midivae.data.style, standardised over the songs, Euclidean), their note part and their tempo
code alone are scored beside the model's song vectors and the baselines, with the AllMusic labels
(the genre task's) and, as a second labelling of other songs, the tagtraum ones; train and
validation songs only (the test split is not touched). Balanced 10-NN accuracy, precision@10 and
the same-genre AUC with its shuffled-label 95th percentile, as the genre task computes them.

    python scripts/experiments/genre_style.py --store /tmp/lpdstore

Figures: docs/model_selection.md ("Genre at this data size", session 14).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.data.style import NOTE_STYLE_DIMS, phrase_style
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import make_baselines, model_embeddings
from midivae.evaluate.data import flatten, load_store_split
from midivae.evaluate.labels import default_labels_dir, single_genre_labels

METHODS = ("model", "model_l2", "raw_cosine", "chroma", "pca", "random")
CHUNK = 2048


def song_style(flat) -> np.ndarray:
    """Each song's mean style statistics, standardised over the songs (unknown tempo: 0)."""
    style = np.concatenate([phrase_style(T.unpack(flat.packed[a : a + CHUNK]), flat.tempo[a : a + CHUNK])
                            for a in range(0, len(flat), CHUNK)])
    sums = np.zeros((len(flat.starts), style.shape[1]))
    np.add.at(sums, flat.song, np.nan_to_num(style))
    mean = sums / np.bincount(flat.song)[:, None]
    return (mean - mean.mean(0)) / (mean.std(0) + 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from genre_probe import genre_scores, song_vectors

    torch.set_num_threads(2)
    train, val = load_store_split(args.store, "train", None), load_store_split(args.store, "validation", None)
    songs = [s for s in train + val if len(s)]
    ids = [s.song_id for s in songs]
    labellings = {"amg": single_genre_labels(ids),
                  "tagtraum": single_genre_labels(ids, default_labels_dir().parent / "tagtraum")}
    style = song_style(flatten(songs))
    model = midivae.load_model(None)
    unlabelled = [s for s in train if s.song_id not in labellings["amg"]][:200]
    embs = {e.name: e for e in model_embeddings(model) + make_baselines(unlabelled, int(model.latent_dim), METHODS[2:])}
    for name, labels in labellings.items():
        pos = [i for i, s in enumerate(songs) if s.song_id in labels]
        genres = sorted({labels[songs[i].song_id] for i in pos})
        y = np.array([genres.index(labels[songs[i].song_id]) for i in pos])
        flat = flatten([songs[i] for i in pos])
        print(f"\n{name}: {len(pos)} songs, {len(genres)} genres")
        print("| song vector | balanced 10-NN | precision@10 | same-genre AUC (shuffled 95%) |\n|---|---|---|---|")
        rows = {m: (song_vectors(embs[m], flat), embs[m].distance) for m in METHODS}
        rows.update({"style statistics": (style[pos], "euclidean"),
                     "their note part": (style[pos][:, :NOTE_STYLE_DIMS], "euclidean"),
                     "their tempo code": (style[pos][:, NOTE_STYLE_DIMS:], "euclidean")})
        for m, (sv, distance) in rows.items():
            g = genre_scores(sv, distance, y)
            print(f"| {m} | {g['balanced']:.3f} | {g['p@10']:.3f} | {g['auc']['auc']:.3f} ({g['auc']['shuffled95']:.3f}) |",
                  flush=True)


if __name__ == "__main__":
    main()
