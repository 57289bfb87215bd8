"""The only real versions in ../shared: a folder (symlinks) + CSV for version identification.

Two songs have two karaoke files each in `midi/karaoke_pop/`: "You're the Inspiration" (a .kar
and a .mid, near-identical arrangements) and "Paint My Love" (Michael Learns To Rock's and a
Tagalog re-recording's, genuinely different transcriptions). The folder holds every file of
`karaoke_pop/` and `multitrack_pop/` (164), so each query has 162 distractors.

    python scripts/experiments/real_versions.py --out /tmp/realv
    midivae evaluate --data STORE --tasks versions --versions-csv /tmp/realv/versions.csv --out DIR
    python scripts/experiments/song_projection.py --store STORE --real-versions /tmp/realv/versions.csv 0 0.5

Four queries: a smoke test of real behaviour, not a measurement (docs/model_selection.md, "Song projection").
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from midivae.evaluate.labels import default_data_root

SONGS = {"inspiration": "youre_the_inspiration", "paint my love": "paint_my_love"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="shared data root (default: MIDIVAE_DATA or ../shared/data)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    midi = (args.data or default_data_root()) / "midi"
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in ("karaoke_pop", "multitrack_pop"):
        for f in sorted((midi / folder).iterdir()):
            if f.suffix.lower() not in (".mid", ".kar"):
                continue
            link = args.out / f.name.replace(" ", "_")
            if not link.exists():
                link.symlink_to(f.resolve())
            song = next((s for key, s in SONGS.items() if key in f.name.lower()), link.name)
            rows.append((link.name, song))
    with (args.out / "versions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "song"])
        w.writerows(rows)
    print(f"{args.out / 'versions.csv'}: {len(rows)} files, {sum(s in SONGS.values() for _, s in rows)} in version groups")


if __name__ == "__main__":
    main()
