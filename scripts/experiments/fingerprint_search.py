"""Experiment: the landmark-fingerprint settings of the search head, on the validation split.

Starts from the checkpoint's search head and varies the fingerprint hashes and weight; prints
excerpt Hit@1/MRR, phrase Hit@1 per alteration (no any-key), the worst song Hit@1 (any-key for
transpositions) and version identification (generated `hard` versions, 302 files). With
``--distractors N`` the first N train songs join the index of the excerpt and robustness tasks
(queries still from the validation songs only): the collection size of the held-out check.

    python scripts/experiments/fingerprint_search.py --store /tmp/lpdstore 0:0 64:0.1 64:0.2
    python scripts/experiments/fingerprint_search.py --store /tmp/lpdstore --distractors 1000 64:0.2 64:0.4
    python scripts/experiments/fingerprint_search.py --store /tmp/lpdstore --distractors 1000 --by-length 64:0.2:onsets 64:0.2

A third field ``onsets`` uses landmarks without note lengths (the search head before session 14).
``--by-length`` adds phrase Hit@1 (drop, shift, piano->guitar) per length of the query's song.
Figures are in docs/model_selection.md ("Landmark fingerprints", session 4; "Note lengths in the
landmarks", session 14).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

import torch

import midivae
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, model_embedding
from midivae.evaluate.data import load_store_split, pick
from midivae.evaluate.versions import VERSION_PRESETS, generated_versions

NAMES = ("drop_20pct_notes", "shift_eighth", "piano_to_guitar", "transpose_up_2", "transpose_down_3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--distractors", type=int, default=0, help="train songs added to the excerpt and robustness index")
    ap.add_argument("--by-length", action="store_true", help="phrase Hit@1 per length of the query's song too")
    ap.add_argument("settings", nargs="+", help="HASHES:WEIGHT[:onsets] (0:0 = no fingerprints; onsets: no note lengths)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from song_projection import excerpt_among  # the excerpt task among distractor songs
    torch.set_num_threads(2)
    model = midivae.load_model(args.checkpoint)
    base, enc = model.search_head, CachedEncoder(model)
    val = load_store_split(args.store, "validation", None)
    val = [s for s in val if len(s)]
    distractors = [s for s in load_store_split(args.store, "train", None)[: args.distractors] if len(s)]
    queries = T.altered_queries(val, 1000, seed=0)  # rows of the validation songs, first in the index
    tmp = Path(tempfile.mkdtemp(prefix="midivae-versions-"))
    versions = generated_versions(pick(val, None, 0), tmp, 100, 0, VERSION_PRESETS["hard"])
    for spec in args.settings:
        hashes, weight, *kind = spec.split(":")
        model._search_head = dataclasses.replace(base, fingerprint_hashes=int(hashes), fingerprint_weight=float(weight),
                                                 fingerprint_durations=kind != ["onsets"])
        emb = model_embedding(model, "model", "cosine", enc)
        e = dict(zip(("hit@1", "mrr"), excerpt_among(val, distractors, emb)))
        r = T.robustness(val + distractors, emb, queries=queries)
        v = T.version_identification(versions, emb)
        worst = min(r.get(f"{n}/song_hit1_anykey", r[f"{n}/song_hit1"]) for n in NAMES)
        phrase = " / ".join(f"{r[f'{n}/phrase_hit1']:.3f}" for n in NAMES)
        print(f"| {spec} | {e['hit@1']:.3f} / {e['mrr']:.3f} | {phrase} | {worst:.3f} | {v['hit@1']:.3f} / {v['mrr']:.3f} |",
              flush=True)
        if args.by_length:
            by_length(r)
    shutil.rmtree(tmp, ignore_errors=True)


def by_length(r: dict) -> None:
    """Phrase Hit@1 of drop, shift and piano->guitar queries per number of phrases in their song
    (the robustness task's ``phrase_hit1_in_songs_*``)."""
    cells = []
    for lo, hi in T.SONG_LENGTH_GROUPS:
        label = T.song_length_label(lo, hi)
        cells.append(f"{label} phrases ({r[f'shift_eighth/n_in_songs_{label}']} queries): "
                     + " / ".join(f"{r.get(f'{n}/phrase_hit1_in_songs_{label}', float('nan')):.3f}" for n in NAMES[:3]))
    print("   by song length, phrase Hit@1 drop20 / shift6 / p->g: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
