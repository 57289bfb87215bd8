"""Experiment: the song's tempo as evidence for version identification (file queries).

Queries of several phrases are scored without the song part (which now holds the tempo code), so
the version task ignores tempo. This adds a tempo term to the task's rule: D(q, c) + lam x (1 -
k(q, c)), k = exp(-(d / s)^2 / 2) of d, the octave-folded distance between the two files' tempi
in octaves (0.03 ~ 2%), on the validation split's ``hard`` and ``hard-drums`` re-renderings among
all the store's songs (exact song-free cosine, as scripts/experiments/hub_versions.py). A
generated version keeps its song's tempo, which real transcriptions need not do, so each rule is
scored three ways: the versions' tempo as written (exact), each re-rendering's tempo moved by a
random factor within +-4%, and each re-rendering given another song's tempo (unrelated).

    python scripts/experiments/tempo_versions.py --store /tmp/lpdstore [--real-versions DIR/versions.csv]

Figures: docs/model_selection.md ("The song's tempo").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.evaluate.baselines import song_free_embed
from midivae.evaluate.data import flatten
from midivae.evaluate.metrics import summarise
from midivae.evaluate.tasks import other_version_ranks
from midivae.evaluate.versions import validation_version_sets

sys.path.insert(0, str(Path(__file__).parent))
from hub_versions import file_distances  # noqa: E402


def folded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.log2(a)[:, None] - np.log2(b)[None, :]
    return np.abs(x - np.round(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--real-versions", type=Path, default=None)
    ap.add_argument("--width", type=float, default=0.03, help="kernel width in octaves")
    ap.add_argument("weights", nargs="*", type=float, default=[0.01, 0.03, 0.1])
    args = ap.parse_args()
    torch.set_num_threads(2)
    embed = song_free_embed(midivae.load_model(None))
    sets = validation_version_sets(args.store, real_csv=args.real_versions)
    rng = np.random.default_rng(0)
    for name, vs in sets.items():
        flat = flatten(vs.songs)
        x = np.concatenate([embed(b) for b in flat.batches(None, 1024)])
        fwd, _ = file_distances(x, flat.starts)
        _, gid = np.unique(np.asarray(vs.group), return_inverse=True)
        query_files = np.nonzero(np.bincount(gid)[gid] >= 2)[0]
        tempo = np.array([s.tempo for s in vs.songs])
        is_version = np.array(["__v2" in s.song_id for s in vs.songs])
        scenarios = {"exact": tempo}
        if is_version.any():
            scenarios["+-4%"] = np.where(is_version, tempo * rng.uniform(0.96, 1.04, len(tempo)), tempo)
            scenarios["unrelated"] = np.where(is_version, rng.permutation(tempo), tempo)
        print(f"\n{name} ({len(query_files)} queries, {len(vs.songs)} files; tempi known "
              f"{np.isfinite(tempo).mean():.0%})")
        print("| rule | " + " | ".join(scenarios) + " |\n|---|" + "---|" * len(scenarios))
        rows = {"D (the rule)": {k: fwd for k in scenarios}}
        for lam in args.weights:
            rows[f"D + {lam} x (1 - k)"] = {
                k: fwd + lam * (1 - np.exp(-0.5 * (folded(t, t) / args.width) ** 2)) for k, t in scenarios.items()}
        for rule, by in rows.items():
            cells = []
            for k, d in by.items():
                s = summarise(other_version_ranks(d[query_files].astype(np.float64), query_files, gid, tol=1e-6))
                cells.append(f"{s['hit@1']:.3f} / {s['mrr']:.3f}")
            print(f"| {rule} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
