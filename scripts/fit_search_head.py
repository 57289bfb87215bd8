"""Refit a checkpoint's search head (rotation + song projection) on a store's train split.

`midivae train` does this for every run's `best/`; this script redoes it for an existing
checkpoint, e.g. the shipped one after a change to the search head:

    python scripts/fit_search_head.py --store /tmp/lpdstore --checkpoint src/midivae/pretrained

The settings (bar weight, coarse dims, shortlist, fingerprints) are kept from the checkpoint's
current head (a checkpoint without one gets the defaults `midivae train` fits); the song weight is
`--song-weight` (default midivae.model.search_head.SONG_WEIGHT).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import midivae
from midivae.data.store import PhraseStore
from midivae.model.search_head import SEARCH_FILE, SONG_WEIGHT
from midivae.model.train import fit_search_head_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--song-weight", type=float, default=SONG_WEIGHT)
    args = ap.parse_args()
    has_head = (Path(args.checkpoint) / SEARCH_FILE).is_file()
    settings = midivae.load_model(args.checkpoint).search_head.settings() if has_head else {}
    settings.pop("song_weight", None)
    store = PhraseStore.open(args.store)
    try:
        rows = store.rows("train")
        _, song = np.unique(np.asarray(store.song_ids(rows), dtype=object), return_inverse=True)
        packed = np.ascontiguousarray(store.packed(rows))
        tempo = store.tempi(rows)
    finally:
        store.close()
    fit_search_head_of(args.checkpoint, packed, args.seed, train_song=song.reshape(-1), train_tempo=tempo,
                       song_weight=args.song_weight, **settings)
    head = midivae.load_model(args.checkpoint).search_head
    print(f"{args.checkpoint}: search head fitted on {rows.size} train phrases ({np.isfinite(tempo).mean():.0%} "
          f"with a tempo): {head.settings()}")


if __name__ == "__main__":
    main()
