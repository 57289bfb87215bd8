"""A larger LPD-5 folder for timing the evaluation at scale: every song of a folder, plus
distinct variants of it (retrograde, inversion, both) written as LPD-5 .npz under new song ids.

The variants are other music (time reversed, pitches mirrored), not versions of their song, so
a run on this folder measures time and memory at N songs, not retrieval quality. Originals are
linked, not copied; variants carry no genre label.

    python scripts/experiments/scale_folder.py ../shared/data/lpd5/lpd_5_cleansed /tmp/scale --variants 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

VARIANTS = ("retrograde", "inversion", "retro_inversion")
LOW, HIGH = 24, 107  # the model's pitch range: an inversion maps it onto itself


def variant_id(song_id: str, variant: str) -> str:
    digest = hashlib.sha1(f"{song_id}/{variant}".encode()).hexdigest().upper()
    return "TRZ" + "".join(c for c in digest if c.isalnum())[:15]


def transformed(arrays: dict[str, np.ndarray], variant: str) -> dict[str, np.ndarray]:
    out = dict(arrays)
    reverse, invert = "retro" in variant, "inversion" in variant
    info = json.loads(bytes(arrays["info.json"]).decode())
    for i in range(5):
        shape = tuple(int(x) for x in arrays[f"pianoroll_{i}_csc_shape"])
        if shape[0] == 0:
            continue
        m = sp.csc_matrix((arrays[f"pianoroll_{i}_csc_data"], arrays[f"pianoroll_{i}_csc_indices"],
                           arrays[f"pianoroll_{i}_csc_indptr"]), shape=shape).toarray()
        if reverse:
            m = m[::-1]
        if invert and not info[str(i)]["is_drum"]:
            flipped = np.zeros_like(m)
            flipped[:, LOW:HIGH + 1] = m[:, LOW:HIGH + 1][:, ::-1]
            m = flipped
        c = sp.csc_matrix(m)
        c.sort_indices()
        out[f"pianoroll_{i}_csc_data"] = c.data.astype(arrays[f"pianoroll_{i}_csc_data"].dtype)
        out[f"pianoroll_{i}_csc_indices"] = c.indices.astype(np.int32)
        out[f"pianoroll_{i}_csc_indptr"] = c.indptr.astype(np.int32)
    if reverse and "tempo" in arrays:
        out["tempo"] = arrays["tempo"][::-1].copy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", type=int, default=3, choices=range(0, len(VARIANTS) + 1))
    args = ap.parse_args()
    files = sorted(args.source.rglob("*.npz"))
    for n, path in enumerate(files):
        song_id = path.parent.name
        link = args.out / song_id / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(path.resolve(), link)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for variant in VARIANTS[: args.variants]:
            target = args.out / variant_id(song_id, variant) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(target, **transformed(arrays, variant))
        if n % 200 == 0:
            print(f"{n} / {len(files)}", flush=True)
    print(f"{len(files) * (1 + args.variants)} songs under {args.out}")


if __name__ == "__main__":
    main()
