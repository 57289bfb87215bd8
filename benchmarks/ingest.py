"""Ingest benchmark (issue 2): MIDI -> phrases vs pypianoroll, LPD ingest time, MuseGAN file memory.

One run prints the machine (CPU flags, cores) and one markdown table:

* MIDI files/s and phrases/s over ``midi/karaoke_pop`` + ``midi/multitrack_pop`` (164 files):
  midivae's ``read_midi`` + ``cut_phrases`` against the reference tool of the original work,
  pypianoroll (pretty_midi underneath), doing the same conversion (LPD-5 merge, binarize,
  pitches 24-107, 4-bar phrases, empty ones dropped);
* LPD-5 ``.npz`` songs/s through the real ``midivae.data.ingest.ingest`` into a temporary store,
  against the issue's target scaled to the song count (5,004 songs in 2 min);
* peak memory of reading a MuseGAN-format phrase file of >= 50,000 phrases (built from that store
  with ``write_musegan``, never densified), streaming ``iter_musegan`` vs MuseGAN's dense loader,
  each in a fresh subprocess.

    python benchmarks/ingest.py            # full measurement (several minutes)
    python benchmarks/ingest.py --quick    # small subsets, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from midivae.constants import (
    LOWEST_PITCH,
    MIDI_SUFFIXES,
    N_PITCHES,
    N_TRACKS,
    PHRASE_CELLS,
    PHRASE_SHAPE,
    STEPS_PER_BEAT,
    STEPS_PER_PHRASE,
)
from midivae.io.musegan import write_musegan

REPO = Path(__file__).resolve().parents[1]
MIDI_DIRS = ("karaoke_pop", "multitrack_pop")
#: Issue 2: 5,004 songs ingested in under 2 minutes.
TARGET_SONGS, TARGET_SECONDS = 5004, 120.0
TARGET_MIDI_RATIO = 20.0
TARGET_MEMORY_RATIO = 0.25
FULL_MUSEGAN = 50_000
MIB = 1 << 20


def data_dir() -> Path:
    return Path(os.environ.get("MIDIVAE_DATA", REPO.parent / "shared" / "data"))


def machine() -> str:
    flags: set[str] = set()
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def has(flag: str) -> str:
        return "yes" if flag in flags else "no"

    return (
        f"CPU: {model}; {cores} usable cores (os.cpu_count()={os.cpu_count()}); "
        f"avx2={has('avx2')} avx512f={has('avx512f')} avx512_bf16={has('avx512_bf16')} "
        f"amx_bf16={has('amx_bf16')}; numpy {np.__version__}; Python {sys.version.split()[0]}"
    )


# --- MIDI: midivae vs the pypianoroll reference ---------------------------------------------------


def midi_files(root: Path) -> list[Path]:
    return sorted(
        p for d in MIDI_DIRS for p in (root / "midi" / d).iterdir() if p.suffix.lower() in MIDI_SUFFIXES
    )


def midivae_phrases(path: Path) -> np.ndarray:
    from midivae.io import read_midi
    from midivae.song import cut_phrases

    return cut_phrases(read_midi(path)).phrases


def _lpd5_family(program: int, is_drum: bool) -> int | None:
    """LPD-5's merge rule (salu133445/lakh-pianoroll-dataset, merger_5.py), tested in its order."""
    if is_drum:
        return 0
    if program < 8:
        return 1
    if 24 <= program < 32:
        return 2
    if 32 <= program < 40:
        return 3
    if program < 96 or 104 <= program < 112:
        return 4
    return None


def pypianoroll_phrases(path: Path) -> np.ndarray:
    """The reference conversion with pypianoroll (the original work's tool), vectorised per track.

    pypianoroll.read parses with pretty_midi at 12 steps per beat; tracks merge into the five
    LPD-5 families (max of velocities == OR once binarized), pitches are cropped to 24-107 and
    the roll is cut into non-overlapping 4-bar phrases, empty ones dropped.
    """
    import pypianoroll

    with warnings.catch_warnings():  # pretty_midi warns about meta events on non-zero tracks
        warnings.simplefilter("ignore")
        multitrack = pypianoroll.read(str(path), resolution=STEPS_PER_BEAT)
    n_steps = max((t.pianoroll.shape[0] for t in multitrack.tracks), default=0)
    n = -(-n_steps // STEPS_PER_PHRASE)
    roll = np.zeros((n * STEPS_PER_PHRASE, N_PITCHES, N_TRACKS), dtype=bool)
    for track in multitrack.tracks:
        family = _lpd5_family(int(track.program), bool(track.is_drum))
        if family is None or track.pianoroll.size == 0:
            continue
        pr = track.pianoroll[:, LOWEST_PITCH : LOWEST_PITCH + N_PITCHES] > 0
        roll[: pr.shape[0], :, family] |= pr
    phrases = roll.reshape(n, *PHRASE_SHAPE)
    return phrases[phrases.reshape(n, -1).any(axis=1)]


def time_reader(reader, files: list[Path], repeats: int = 1) -> dict:
    """Best of ``repeats`` passes over all files (the least disturbed by other work on the machine):
    wall and CPU seconds, phrases, failures by exception type."""
    best = None
    for _ in range(repeats):
        phrases, failures = 0, Counter()
        start, cpu = time.perf_counter(), time.process_time()
        for path in files:
            try:
                phrases += len(reader(path))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures[type(exc).__name__] += 1
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if best is None or seconds < best["seconds"]:
            best = {"seconds": seconds, "cpu": cpu, "phrases": phrases, "failures": failures}
    assert best is not None
    return best


# --- LPD: the real ingest --------------------------------------------------------------------------


def lpd_files(root: Path) -> list[Path]:
    return sorted((root / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))


def run_ingest(sources: list[Path], out: Path, workers: int) -> dict:
    from midivae.data.ingest import ingest

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    start, cpu0 = time.perf_counter(), cpu()
    summary = ingest(sources, out, workers=workers, progress=False)
    wall = time.perf_counter() - start
    return {
        "seconds": wall,
        "cpu": cpu() - cpu0,
        "files_read": summary.files_read,
        "phrases": summary.phrases_written,
        "skipped": dict(summary.skipped),
    }


def time_lpd_reader(files: list[Path]) -> dict:
    from midivae.io import read_lpd
    from midivae.song import cut_phrases

    start = time.perf_counter()
    phrases = sum(len(cut_phrases(read_lpd(p))) for p in files)
    return {"seconds": time.perf_counter() - start, "files": len(files), "phrases": phrases}


# --- MuseGAN phrase file: build it, then read it two ways in fresh processes ------------------------


def phrase_source(store_dir: Path | None, lpd: list[Path]) -> Iterator[np.ndarray]:
    """The songs' phrases in chunks, from the ingested store when there is one, else from the npz."""
    if store_dir is not None:
        from midivae.data.store import PhraseStore

        with PhraseStore.open(store_dir) as store:
            total = len(store)
            for i in range(0, total, 1024):
                yield store.phrases(slice(i, min(i + 1024, total)))
        return
    from midivae.io import read_lpd
    from midivae.song import cut_phrases

    for path in lpd:
        yield cut_phrases(read_lpd(path)).phrases


def cycled(source, target: int, chunk: int = 1024) -> Iterator[np.ndarray]:
    """Chunks of exactly ``chunk`` phrases (the last smaller), passing over the source until
    ``target`` phrases were given (each phrase twice, for a file of >= 50,000 from ~37,000)."""
    given = 0
    buffer: list[np.ndarray] = []
    held = 0
    while given < target:
        progressed = False
        for block in source():
            if not len(block):
                continue
            progressed = True
            block = block[: target - given - held]
            buffer.append(block)
            held += len(block)
            while held >= chunk or (held and given + held >= target):
                joined = np.concatenate(buffer)
                out, rest = joined[:chunk], joined[chunk:]
                yield out
                given += len(out)
                held = len(rest)
                buffer = [rest] if held else []
            if given >= target:
                return
        if not progressed:
            raise RuntimeError("no phrases to build the MuseGAN file from")


CHILD = r"""
import json, resource, sys, time
import numpy as np
from midivae.io.musegan import iter_musegan, load_musegan_dense
mode, path = sys.argv[1], sys.argv[2]
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
start = time.perf_counter()
cells = phrases = 0
if mode == 'stream':
    for chunk in iter_musegan(path):
        phrases += len(chunk)
        cells += int(np.count_nonzero(chunk))
elif mode == 'dense':
    data = load_musegan_dense(path)
    phrases = len(data)
    cells = int(np.count_nonzero(data))
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({'seconds': seconds, 'phrases': phrases, 'cells': cells, 'peak': hwm(),
                  'cpu': usage.ru_utime + usage.ru_stime,
                  'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def measure_child(mode: str, path: Path) -> dict:
    """Run one read in a fresh interpreter; mode 'stream', 'dense' or 'imports' (baseline)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- Report -----------------------------------------------------------------------------------------


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsets: a smoke run of a minute")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes (default 2)")
    parser.add_argument("--midi-files", type=int, default=None, help="limit the MIDI files")
    parser.add_argument("--lpd-songs", type=int, default=None, help="limit the LPD songs")
    parser.add_argument("--musegan-phrases", type=int, default=None, help="phrases in the MuseGAN file")
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--skip", action="append", default=[], choices=["midi", "lpd", "musegan"])
    args = parser.parse_args(argv)

    root = data_dir()
    quick = args.quick
    n_midi = args.midi_files or (12 if quick else None)
    n_lpd = args.lpd_songs or (100 if quick else None)
    n_musegan = args.musegan_phrases or (3000 if quick else FULL_MUSEGAN)

    print(machine())
    print(f"data: {root}{'  (--quick: subsets)' if quick else ''}")
    rows: list[tuple[str, str, str, str, str, str]] = []
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="midivae-bench-", dir=args.tmp) as scratch:
        scratch = Path(scratch)

        if "midi" not in args.skip:
            files = midi_files(root)[:n_midi]
            ours = time_reader(midivae_phrases, files, repeats=1 if quick else 5)
            ref = time_reader(pypianoroll_phrases, files)
            ratio = ref["seconds"] / ours["seconds"]
            n = len(files)
            rows.append((
                f"MIDI -> phrases, {n} files (karaoke_pop + multitrack_pop), files/s",
                fmt(n / ours["seconds"]), fmt(n / ref["seconds"]), f"{ratio:.1f}x",
                f">= {TARGET_MIDI_RATIO:.0f}x", "yes" if ratio >= TARGET_MIDI_RATIO else "**no**",
            ))
            rows.append((
                "MIDI -> phrases, phrases/s", fmt(ours["phrases"] / ours["seconds"], 0),
                fmt(ref["phrases"] / ref["seconds"], 0),
                f"{(ours['phrases'] / ours['seconds']) / max(ref['phrases'] / ref['seconds'], 1e-9):.1f}x", "", "",
            ))
            rows.append((
                "MIDI -> phrases, CPU seconds of the process (robust to a shared machine)",
                fmt(ours["cpu"], 2), fmt(ref["cpu"], 2), f"{ref['cpu'] / ours['cpu']:.1f}x", "", "",
            ))
            notes.append(
                f"MIDI: midivae {ours['phrases']} phrases in {ours['seconds']:.2f} s "
                f"(failures {dict(ours['failures']) or 0}); pypianoroll {ref['phrases']} phrases in "
                f"{ref['seconds']:.2f} s (failures {dict(ref['failures']) or 0})."
            )
            print(notes[-1], flush=True)

        store_dir: Path | None = None
        lpd = lpd_files(root)[:n_lpd]
        if "lpd" not in args.skip:
            store_dir = scratch / "store"
            res = run_ingest(lpd, store_dir, args.workers)
            target = TARGET_SECONDS * len(lpd) / TARGET_SONGS
            rows.append((
                f"LPD-5 npz -> store, {len(lpd)} songs, `ingest(workers={args.workers})`: seconds",
                fmt(res["seconds"]), "", "", f"< {target:.0f} s (5,004 in 2 min, scaled)",
                "yes" if res["seconds"] < target else "**no**",
            ))
            rows.append((
                "LPD-5 ingest: CPU seconds, parent + workers (load-independent)",
                fmt(res["cpu"]), "", "", f"< {target * args.workers:.0f} (= target x {args.workers} workers)", "",
            ))
            rows.append((
                "LPD-5 ingest: songs/s, phrases/s",
                f"{fmt(res['files_read'] / res['seconds'])} / {fmt(res['phrases'] / res['seconds'], 0)}",
                "", "", f"> {TARGET_SONGS / TARGET_SECONDS:.1f} songs/s", "",
            ))
            notes.append(
                f"LPD ingest: {res['files_read']} files read, {res['phrases']} phrases written, "
                f"skipped {res['skipped'] or 0}, {res['seconds']:.1f} s."
            )
            print(notes[-1], flush=True)
            sample = lpd[: 40 if quick else 200]
            raw = time_lpd_reader(sample)
            rows.append((
                f"  (breakdown) read_lpd + cut_phrases, 1 process, {len(sample)} songs: songs/s",
                fmt(raw["files"] / raw["seconds"]), "", "", "", "",
            ))

        if "musegan" not in args.skip:
            path = scratch / "train_x_lpd_5_phr.npz"

            def source() -> Iterator[np.ndarray]:
                return phrase_source(store_dir, lpd)

            start = time.perf_counter()
            nnz = write_musegan(path, cycled(source, n_musegan), n_musegan, compressed=True)
            build = time.perf_counter() - start
            size = path.stat().st_size
            dense_bytes = n_musegan * PHRASE_CELLS
            notes.append(
                f"MuseGAN file: {n_musegan:,} phrases, {nnz:,} nonzero cells, {size / MIB:,.1f} MiB "
                f"compressed npz (dense form {dense_bytes / MIB:,.0f} MiB), written in {build:.1f} s "
                f"with write_musegan from {'the ingested store' if store_dir else 'read_lpd'}."
            )
            print(notes[-1], flush=True)
            imports = measure_child("imports", path)
            stream = measure_child("stream", path)
            dense = measure_child("dense", path)
            for m in (stream, dense):
                assert m["phrases"] == n_musegan and m["cells"] == nnz, m
            ratio = stream["peak"] / dense["peak"]
            rows.append((
                f"MuseGAN file ({n_musegan:,} phrases) read: peak RSS MiB (VmHWM)",
                fmt(stream["peak"] / MIB, 0), fmt(dense["peak"] / MIB, 0), f"{ratio:.3f}",
                f"< {TARGET_MEMORY_RATIO} (at >= {FULL_MUSEGAN:,} phrases)",
                ("yes" if ratio < TARGET_MEMORY_RATIO else "**no**") if n_musegan >= FULL_MUSEGAN else "n/a",
            ))
            rows.append((
                "MuseGAN file read: seconds wall / CPU (incl. counting cells)",
                f"{fmt(stream['seconds'])} / {fmt(stream['cpu'])}",
                f"{fmt(dense['seconds'])} / {fmt(dense['cpu'])}",
                f"{dense['seconds'] / stream['seconds']:.2f}x", "", "",
            ))
            notes.append(
                f"MuseGAN read: process peak after imports only {imports['peak'] / MIB:.0f} MiB; "
                f"streaming `iter_musegan` (1,024-phrase chunks) vs MuseGAN's loader "
                f"(`np.zeros(shape, bool)` + `data[nonzero] = True`), each in a fresh process."
            )

    print()
    print("| measurement | midivae | reference (pypianoroll / MuseGAN loader) | ratio | target | met |")
    print("|---|---:|---:|---:|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
