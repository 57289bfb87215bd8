"""Experiment: how well could anything tell a shifted phrase from a near-repeat of it in its song?

Every eighth-shift query the search misses ranks another phrase of the *same* song first, a
near-repeat. This probe scores, per length of the query's song and among that song's phrases
only, three oracles that read the notes themselves: the cells with the shift undone (the query's
last 186 steps against each phrase's first 186: what an exact aligned comparison can tell), and
the exact Jaccard of the landmark sets (midivae.data.fingerprint) without and with note lengths.
Exact copies of the original count as it; ties are shared.

    python scripts/experiments/near_repeats.py --store /tmp/lpdstore

Figures: docs/model_selection.md ("Note lengths in the landmarks").
"""

from __future__ import annotations

import argparse

import numpy as np

from midivae.constants import STEPS_PER_PHRASE
from midivae.data.fingerprint import landmarks
from midivae.evaluate import tasks as T
from midivae.evaluate.data import load_store_split

SHIFT = 6


def share_first(score: np.ndarray, own: int, copies: np.ndarray) -> float:
    """1 / (ties + 1) if the original's score is the best (higher is better), else 0."""
    score = score.astype(np.float64).copy()
    score[copies] = -np.inf
    closer, tied = (score > score[own]).sum(), (score == score[own]).sum() - 1
    return 0.0 if closer else 1.0 / (tied + 1)


def landmark_sets(phrases: np.ndarray, durations: bool) -> list[set[int]]:
    owner, code = landmarks(phrases, durations)
    return [set(code[owner == i].tolist()) for i in range(len(phrases))]


def jaccard(q: set[int], sets: list[set[int]]) -> np.ndarray:
    return np.array([len(q & s) / max(1, len(q | s)) for s in sets])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    songs = [s for s in load_store_split(args.store, "validation", None) if len(s)]
    flat = T.flatten(songs)
    queries = T.altered_queries(songs, args.queries, ["shift_eighth"], seed=0)
    rows = queries.rows[queries.kept["shift_eighth"]]
    shifted = T.unpack(queries.packed["shift_eighth"])
    sizes = np.bincount(flat.song)
    got = {name: np.zeros(len(rows)) for name in ("cells", "landmarks", "landmarks + lengths")}
    for i, r in enumerate(rows):
        song = flat.song[r]
        cand = np.arange(flat.starts[song], flat.starts[song] + sizes[song])
        phrases = T.unpack(flat.packed[cand])
        own = int(np.flatnonzero(cand == r)[0])
        copies = np.array([(p == phrases[own]).all() for p in phrases]) & (cand != r)
        q = shifted[i].reshape(STEPS_PER_PHRASE, -1)[SHIFT:]
        cells = phrases.reshape(len(cand), STEPS_PER_PHRASE, -1)[:, : STEPS_PER_PHRASE - SHIFT]
        got["cells"][i] = share_first(-(cells ^ q).sum(axis=(1, 2)), own, copies)
        for name, durations in (("landmarks", False), ("landmarks + lengths", True)):
            qs = landmark_sets(shifted[i][None], durations)[0]
            got[name][i] = share_first(jaccard(qs, landmark_sets(phrases, durations)), own, copies)
    n_phrases = sizes[flat.song[rows]]
    print(f"{len(rows)} shifted phrases of {len(songs)} validation songs; original first among its song's phrases")
    groups = [(n_phrases >= lo) & (n_phrases < (hi or np.inf)) for lo, hi in T.SONG_LENGTH_GROUPS]
    print("| oracle | " + " | ".join(f"{T.song_length_label(lo, hi)} phrases" for lo, hi in T.SONG_LENGTH_GROUPS) + " | all |")
    print("|---|" + "---|" * (len(groups) + 1))
    print("| queries | " + " | ".join(str(int(g.sum())) for g in groups) + f" | {len(rows)} |")
    for name, hit in got.items():
        cells = [f"{hit[g].mean():.3f}" for g in groups]
        print(f"| {name} | " + " | ".join(cells) + f" | {hit.mean():.3f} |")


if __name__ == "__main__":
    main()
