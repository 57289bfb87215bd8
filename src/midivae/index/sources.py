"""Where songs to index come from: MIDI / LPD ``.npz`` files, folders of them, or a phrase store.

Each song becomes a :class:`SongSource` whose phrases are read lazily, so a build can stream a
large collection and skip a bad file with its reason instead of failing the whole run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midivae.constants import MIDI_SUFFIXES, STEPS_PER_BAR
from midivae.errors import InvalidInputError, MidiVaeError, NotFoundError
from midivae.song import Phrases, Song, cut_phrases

LPD_SUFFIX = ".npz"


@dataclass(frozen=True)
class SongSource:
    song_id: str
    title: str
    path: str
    source: str  # "midi", "lpd" or "store"
    load: Callable[[], Phrases]


def content_hash(phrases: Phrases) -> str:
    """Hash of the phrase content (not the file bytes): a MIDI file and its LPD twin agree."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.packbits(np.ascontiguousarray(phrases.phrases)).tobytes())
    h.update(np.ascontiguousarray(phrases.bar_offsets, dtype=np.int64).tobytes())
    return h.hexdigest()


def read_song(path: str | os.PathLike[str]) -> Song:
    """A MIDI or LPD ``.npz`` song (by suffix)."""
    from midivae.io import read_lpd, read_midi

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return read_midi(path)
    if suffix == LPD_SUFFIX:
        return read_lpd(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file")
    raise InvalidInputError(path, f"unsupported file type {suffix or '(none)'} (expected MIDI or LPD .npz)")


def clip_bars(song: Song, bars: tuple[int, int] | None) -> Song:
    """The song restricted to bars ``[A, B)`` (bar = step // STEPS_PER_BAR), phrases re-cut from bar A."""
    if bars is None:
        return song
    lo, hi = bars[0] * STEPS_PER_BAR, bars[1] * STEPS_PER_BAR
    sections = tuple((max(b, lo), min(e, hi)) for b, e in song.sections if max(b, lo) < min(e, hi))
    return dataclasses.replace(song, sections=sections)


def read_phrases(path: str | os.PathLike[str], bars: tuple[int, int] | None = None) -> Phrases:
    """Read a file, cut it into phrases (optionally only bars ``[A, B)``); refuse an empty result."""
    phrases = cut_phrases(clip_bars(read_song(path), bars))
    if len(phrases) == 0:
        where = f" in bars {bars[0]}:{bars[1]}" if bars else ""
        raise InvalidInputError(path, f"no non-empty 4-bar phrase{where}")
    return phrases


def _files_under(root: Path) -> list[Path]:
    suffixes = {*MIDI_SUFFIXES, LPD_SUFFIX}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _open_store(path: Path):
    """A PhraseStore if ``path`` is one, else None (the store module may not exist yet)."""
    try:
        from midivae.data.store import PhraseStore
    except ImportError:
        return None
    try:
        return PhraseStore.open(path)
    except MidiVaeError:
        return None


def _store_sources(store, path: Path) -> list[SongSource]:
    """One source per stored song (duplicates hold no rows and are skipped by the store itself).

    The catalogue records the song's original file when the store knows it, so ``--any-key``
    can re-read it later; the phrases themselves come from the store.
    """
    out = []
    for song in store.songs():
        n, first = int(song.get("n_phrases") or 0), song.get("first_row")
        if song.get("duplicate_of") or n == 0 or first is None:
            continue
        rows = np.arange(int(first), int(first) + n, dtype=np.int64)

        def load(rows=rows) -> Phrases:
            offsets = np.asarray(store.bar_offsets(rows), dtype=np.int64)
            order = np.argsort(offsets, kind="stable")
            return Phrases(np.asarray(store.phrases(rows[order]), dtype=bool), offsets[order], float(store.tempi(rows[:1])[0]))

        original = str(song.get("source") or "")
        suffix = Path(original).suffix.lower()
        kind = "lpd" if suffix == LPD_SUFFIX else "midi" if suffix in MIDI_SUFFIXES else "store"
        sid = str(song["song_id"])
        out.append(SongSource(sid, sid, original if kind != "store" else str(path), kind, load))
    return out


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[SongSource]:
    """Every song under ``paths``; ids are file stems, made unique with ``~2``, ``~3``... suffixes."""
    out: list[SongSource] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise NotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            store = _open_store(path)
            if store is not None:
                out.extend(_store_sources(store, path))
                continue
            files = _files_under(path)
        else:
            files = [path]
        for f in files:
            kind = "lpd" if f.suffix.lower() == LPD_SUFFIX else "midi"
            out.append(SongSource(f.stem, f.stem, str(f.resolve()), kind, lambda f=f: read_phrases(f)))
    return _unique_ids(out)


def _unique_ids(sources: list[SongSource]) -> list[SongSource]:
    seen: dict[str, int] = {}
    out = []
    for s in sources:
        n = seen.get(s.song_id, 0) + 1
        seen[s.song_id] = n
        if n > 1:
            s = SongSource(f"{s.song_id}~{n}", s.title, s.path, s.source, s.load)
        out.append(s)
    return out
