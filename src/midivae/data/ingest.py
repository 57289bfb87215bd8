"""Ingest: MIDI files, LPD-5 ``.npz`` songs and MuseGAN phrase files -> a phrase store.

Files are read in worker processes (reading is CPU-bound) and written by this process alone,
in file order, in small atomic batches. Every source is recorded with its outcome, so running
the same ingest again skips what is done and continues where a killed run stopped.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from midivae.constants import MIDI_SUFFIXES
from midivae.data.store import SongRecord, SplitConfig, StoreWriter, note_counts, pack, track_masks
from midivae.errors import InvalidInputError, MidiVaeError, NotFoundError
from midivae.io.lpd import read_lpd
from midivae.io.midi import read_midi
from midivae.song import cut_phrases, known_tempo

MSD_ID = re.compile(r"^TR[A-Z0-9]{16}$")
COMMIT_EVERY_FILES = 64
COMMIT_EVERY_SECONDS = 2.0


@dataclass
class IngestSummary:
    """What an ingest did; ``skipped`` counts files per reason."""

    files_read: int = 0
    songs_written: int = 0
    phrases_written: int = 0
    duplicates: int = 0
    already_done: int = 0
    skipped: Counter = field(default_factory=Counter)
    sections_skipped: int = 0
    empty_phrases_skipped: int = 0  # empty phrases of MuseGAN files (other files drop them silently)
    tempi_added: int = 0  # songs stored before tempi were kept, whose tempo this run read from their file
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "files_read": self.files_read,
            "songs_written": self.songs_written,
            "phrases_written": self.phrases_written,
            "duplicates": self.duplicates,
            "already_done": self.already_done,
            "skipped": dict(self.skipped),
            "files_skipped": sum(self.skipped.values()),
            "sections_skipped_not_4_4": self.sections_skipped,
            "empty_musegan_phrases_skipped": self.empty_phrases_skipped,
            "tempi_added": self.tempi_added,
            "seconds": round(self.seconds, 3),
        }


def npz_kind(path: Path) -> str:
    """'lpd' or 'musegan' from the archive's member names, without loading arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(path, f"not a readable .npz archive ({exc})") from None
    if "pianoroll_0_csc_data.npy" in names:
        return "lpd"
    if {"shape.npy", "nonzero.npy"} <= names:
        return "musegan"
    raise InvalidInputError(path, "an .npz that is neither an LPD-5 song nor a MuseGAN phrase file")


def discover(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to ingest, in a deterministic order: folders are searched recursively."""
    files: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            found = [
                p for p in path.rglob("*")
                if p.is_file() and (p.suffix.lower() in MIDI_SUFFIXES or p.suffix.lower() == ".npz")
            ]
            if not found:
                raise NotFoundError(f"{path}: no MIDI ({', '.join(MIDI_SUFFIXES)}) or .npz files in this folder")
            files.extend(sorted(found))
        elif path.is_file():
            files.append(path)
        else:
            raise NotFoundError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


def song_id_for(path: Path) -> str:
    """LPD songs are named by their MSD id (the parent folder); other files by their stem."""
    if path.suffix.lower() == ".npz" and MSD_ID.match(path.parent.name):
        return path.parent.name
    return path.stem


def _digest(data: bytes, size: int) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def make_record(source: str, song_id: str, phrases: np.ndarray, bar_offsets: np.ndarray,
                tempo: float = float("nan")) -> SongRecord:
    packed = pack(phrases)
    return SongRecord(
        source=source,
        song_id=song_id,
        content_hash=_digest(packed.tobytes(), 16),
        packed=packed,
        bar_offsets=np.asarray(bar_offsets, dtype=np.int64),
        phrase_hashes=tuple(_digest(row.tobytes(), 8) for row in packed),
        track_masks=track_masks(phrases),
        n_notes=note_counts(phrases),
        tempo=float(tempo),
    )


@dataclass(frozen=True)
class _Outcome:
    path: str
    record: SongRecord | None
    reason: str | None
    sections_skipped: int = 0


def _read_one(args: tuple[Path, bool]) -> _Outcome:
    path, allow_any_meter = args
    try:
        if path.suffix.lower() == ".npz":
            song = read_lpd(path)
        else:
            song = read_midi(path, allow_any_meter=allow_any_meter)
        cut = cut_phrases(song)
        if len(cut) == 0:
            return _Outcome(str(path), None, "no non-empty 4-bar phrase")
        record = make_record(str(path), song_id_for(path), cut.phrases, cut.bar_offsets, song.tempo)
        return _Outcome(str(path), record, None, len(song.skipped))
    except MidiVaeError as exc:
        return _Outcome(str(path), None, getattr(exc, "cause", str(exc)))


def reason_group(reason: str) -> str:
    """'corrupt or truncated MIDI (details)' -> 'corrupt or truncated MIDI' for summaries."""
    return reason.split(" (", 1)[0]


def _musegan_outcomes(path: Path, done: set[str]) -> Iterator[_Outcome]:
    from midivae.io.musegan import iter_musegan

    index = 0
    for chunk in iter_musegan(path):
        for phrase in chunk:
            source = f"{path}#{index}"
            if source not in done:
                if phrase.any():
                    rec = make_record(source, f"{path.stem}/{index:06d}", phrase[None], np.zeros(1, np.int64))
                    yield _Outcome(source, rec, None)
                else:
                    yield _Outcome(source, None, "no non-empty 4-bar phrase")
            index += 1


def ingest(
    sources: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    workers: int = 2,
    allow_any_meter: bool = False,
    split: SplitConfig | None = None,
    progress: bool = False,
    on_file: Callable[[_Outcome], None] | None = None,
) -> IngestSummary:
    """Ingest files and folders into the store at ``out`` (created, or resumed if it exists)."""
    started = time.perf_counter()
    files = discover(sources)
    summary = IngestSummary()
    with StoreWriter(out, split) as writer:
        done = writer.done_sources()
        is_musegan = [f.suffix.lower() == ".npz" and npz_kind_safe(f) == "musegan" for f in files]
        singles = [f for f, m in zip(files, is_musegan) if not m]
        musegan = [f for f, m in zip(files, is_musegan) if m]
        seen_hashes = writer.content_hashes()
        todo = [f for f in singles if str(f) not in done]
        summary.already_done = len(singles) - len(todo)
        summary.tempi_added = _add_missing_tempi(writer, {str(f) for f in singles} & done, allow_any_meter, workers)

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="file", desc="ingest", dynamic_ncols=True)

        batch: list[SongRecord] = []
        skipped: list[tuple[str, str]] = []
        last_commit = time.monotonic()

        def flush() -> None:
            nonlocal batch, skipped, last_commit
            if batch or skipped:
                before = writer.n_rows
                writer.commit(batch, skipped)
                summary.phrases_written += writer.n_rows - before
            batch, skipped = [], []
            last_commit = time.monotonic()

        def handle(outcome: _Outcome, whole_file: bool = True) -> None:
            if outcome.record is None:
                skipped.append((outcome.path, outcome.reason or "unknown"))
                if whole_file:
                    summary.skipped[reason_group(outcome.reason or "unknown")] += 1
                else:
                    summary.empty_phrases_skipped += 1
            else:
                rec = outcome.record
                unique = writer.unique_song_id(rec.song_id)
                if unique != rec.song_id:
                    rec = SongRecord(**{**rec.__dict__, "song_id": unique})
                if rec.content_hash in seen_hashes:
                    summary.duplicates += 1
                else:
                    seen_hashes.add(rec.content_hash)
                    summary.songs_written += 1
                batch.append(rec)
                summary.files_read += int(whole_file)
                summary.sections_skipped += outcome.sections_skipped
            if on_file is not None:
                on_file(outcome)
            if len(batch) + len(skipped) >= COMMIT_EVERY_FILES or time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
                flush()

        try:
            for outcome in _map_ordered(_read_one, [(f, allow_any_meter) for f in todo], workers):
                handle(outcome)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(phrases=summary.phrases_written + sum(len(r.packed) for r in batch), refresh=False)
            for path in musegan:  # one song per phrase: the file does not say where songs end
                summary.files_read += 1
                for outcome in _musegan_outcomes(path, done):
                    handle(outcome, whole_file=False)
            flush()
        finally:
            if bar is not None:
                bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _read_tempo(args: tuple[str, bool]) -> float:
    """A file's tempo as ingest keeps it (the reader's main tempo, midivae.song.main_tempo); NaN if
    it cannot be read now."""
    path, allow_any_meter = args
    try:
        return read_lpd(path).tempo if path.lower().endswith(".npz") else read_midi(path, allow_any_meter=allow_any_meter).tempo
    except MidiVaeError:
        return float("nan")


def _add_missing_tempi(writer: StoreWriter, sources: set[str], allow_any_meter: bool, workers: int) -> int:
    """Songs stored before the store kept tempi get their tempo from their file (once: a store
    written by this version has them all), so the model's search reads it (midivae.data.style)."""
    stale = [(sid, src) for sid, src in writer.songs_without_tempo() if src in sources]
    if not stale:
        return 0
    tempi = list(_map_ordered(_read_tempo, [(src, allow_any_meter) for _, src in stale], workers))
    writer.set_tempi([(sid, t) for (sid, _), t in zip(stale, tempi)])
    return int(known_tempo(tempi).sum())


def npz_kind_safe(path: Path) -> str:
    try:
        return npz_kind(path)
    except InvalidInputError:
        return "invalid"


def _map_ordered(fn: Callable, items: list, workers: int) -> Iterator:
    """map() in input order, over worker processes when that pays off."""
    if workers <= 1 or len(items) < 8:
        yield from map(fn, items)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=4)
