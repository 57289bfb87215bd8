"""Experiment: the song's tempo among the song projection's style statistics.

The phrase form drops tempo, yet phrases of one song share it and songs differ in it (two random
shared LPD-5 songs lie within 2% of each other's first tempo 4% of the time). This appends a
tempo code to each phrase's style statistics: the Fourier features cos/sin(2 pi k log2 bpm),
k = 1..K (``--harmonics``; octave-folded, so a song written at double or half time keeps its
code; zeros where the tempo is unknown), and refits the projection as
scripts/experiments/song_projection.py does (train songs 800 on; excerpts at scale among 1,002
songs). The probe finds each phrase's tempo by its bytes: store phrases take their song's first
tempo (what midivae's readers keep), altered queries their source phrase's, generated versions
their song's (as if the writer kept the tempo).

    python scripts/experiments/tempo_style.py --store /tmp/lpdstore [--real-versions CSV] 1

(TEMPO_HARMONICS=K in the environment for another number of harmonics.) This was the probe; the
tempo code now lives in midivae.data.style and reaches the search head through the store, the
readers and the evaluation (scripts/experiments/song_projection.py on a store with tempi gives the
same figures). Figures: docs/model_selection.md ("The song's tempo").
"""
import hashlib
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np

import midivae.data.style as S
from midivae.data.store import pack

BASE = lambda ph: S.phrase_style(ph)[:, : S.NOTE_STYLE_DIMS]  # noqa: E731 (the notes' statistics, no tempo code)
BASE_DIMS = int(S.NOTE_STYLE_DIMS)
K = int(os.environ.get("TEMPO_HARMONICS", "4"))
EXTRA = 2 * K
TEMPO: dict[bytes, float] = {}


def _key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=12).digest()


def register(packed: np.ndarray, tempo: float) -> None:
    for r in packed:
        TEMPO[_key(r)] = tempo


def tempo_code(bpm: np.ndarray) -> np.ndarray:
    x = np.log2(np.where(np.isfinite(bpm), bpm, 1.0))[:, None] * np.arange(1, K + 1)[None, :]
    code = np.concatenate([np.cos(2 * np.pi * x), np.sin(2 * np.pi * x)], axis=1)
    return np.where(np.isfinite(bpm)[:, None], code, 0.0).astype(np.float32)


STATS = {"known": 0, "unknown": 0}


def patched(phrases: np.ndarray) -> np.ndarray:
    packed = pack(np.asarray(phrases, dtype=bool))
    bpm = np.array([TEMPO.get(_key(r), np.nan) for r in packed])
    STATS["known"] += int(np.isfinite(bpm).sum())
    STATS["unknown"] += int((~np.isfinite(bpm)).sum())
    return np.concatenate([BASE(phrases), tempo_code(bpm)], axis=1)


class _EitherDims(int):
    def __eq__(self, other):
        return other in (BASE_DIMS, BASE_DIMS + EXTRA)

    __hash__ = int.__hash__


def song_tempi(store: Path) -> dict[str, float]:
    con = sqlite3.connect(store / "manifest.sqlite")
    out = {}
    for sid, src in con.execute("select song_id, source from songs"):
        with np.load(src) as z:
            out[sid] = float(z["tempo"][0])
    return out


def install(store: Path) -> None:
    import midivae.model.song_projection as SP
    import midivae.evaluate.tasks as T
    import midivae.evaluate.versions as V
    from midivae.evaluate.data import load_store_split, flatten

    S.STYLE_DIMS = _EitherDims(BASE_DIMS + EXTRA)
    S.phrase_style = patched
    SP.phrase_style = patched
    tempi = song_tempi(store)
    for split in ("train", "validation", "test"):
        for s in load_store_split(store, split, None):
            register(s.packed, tempi[s.song_id])
    by_safe = {V._safe(k): v for k, v in tempi.items()}

    orig_altered = T.altered_queries

    def altered_queries(songs, *a, **kw):
        q = orig_altered(songs, *a, **kw)
        kept_songs = [s for s in songs if len(s)]
        flat = flatten(kept_songs)
        for name, keep in q.kept.items():
            for r, row in zip(q.packed[name], q.rows[keep]):
                TEMPO[_key(r)] = tempi[kept_songs[flat.song[row]].song_id]
        return q

    T.altered.altered_queries = altered_queries  # the one robustness() builds its queries with
    T.altered_queries = altered_queries  # the one song_projection.py calls
    orig_load = V.load_versions

    def load_versions(folder, csv_path=None):
        vs = orig_load(folder, csv_path)
        for s, g in zip(vs.songs, vs.group):
            t = tempi.get(g)
            if t is None:
                stem = Path(s.song_id).stem.removesuffix("__v2")
                t = by_safe.get(stem)
            if t is None:  # a real MIDI file: its first tempo
                from midivae.io.midi import read_midi
                t = read_midi(Path(folder) / s.song_id, allow_any_meter=True).tempo
            register(s.packed, t)
        return vs

    V.load_versions = load_versions


if __name__ == "__main__":
    store = Path(sys.argv[sys.argv.index("--store") + 1])
    install(store)
    sys.path.insert(0, str(Path(__file__).parent))
    import song_projection  # after install(): it imports phrase_style by name
    song_projection.load_versions = sys.modules["midivae.evaluate.versions"].load_versions
    import midivae.evaluate.versions as V
    song_projection.generated_versions = lambda songs, folder, n, seed, cfg: V.load_versions(
        folder, V.make_version_folder(songs, folder, n, seed, cfg))
    song_projection.main()
    print("tempo lookups", STATS, flush=True)
