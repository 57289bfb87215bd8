"""Songs as the evaluation sees them: an id, its phrases (bit-packed in memory) and bar offsets.

Loaders read an LPD-5-style folder of ``.npz`` files, a folder of MIDI files, or one split of a
phrase store. Phrases are kept bit-packed (10,080 bytes instead of 80,640 per phrase) and
unpacked batch by batch, so a few thousand songs fit in a few hundred megabytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from midivae.constants import MIDI_SUFFIXES, PHRASE_SHAPE
from midivae.errors import InvalidInputError, MidiVaeError, NotFoundError

MSD_ID = re.compile(r"TR[A-Z0-9]{16}")


def pack(phrases: np.ndarray) -> np.ndarray:
    phrases = np.asarray(phrases, dtype=bool)
    return np.packbits(phrases.reshape(len(phrases), int(np.prod(PHRASE_SHAPE))), axis=1)


def unpack(packed: np.ndarray) -> np.ndarray:
    n = int(np.prod(PHRASE_SHAPE))
    return np.unpackbits(packed, axis=1, count=n).view(bool).reshape(len(packed), *PHRASE_SHAPE)


@dataclass(frozen=True)
class SongPhrases:
    """One song's non-empty phrases in order, bit-packed, with the bar each one starts on, and the
    song's tempo (BPM; NaN: unknown), which a model's search head may read."""

    song_id: str
    packed: np.ndarray  # (n, 10080) uint8
    bar_offsets: np.ndarray  # (n,) int64
    tempo: float = float("nan")

    @classmethod
    def from_phrases(cls, song_id: str, phrases: np.ndarray, bar_offsets: np.ndarray | None = None,
                     tempo: float = float("nan")) -> "SongPhrases":
        phrases = np.asarray(phrases, dtype=bool)
        if phrases.ndim != 5 or phrases.shape[1:] != PHRASE_SHAPE:
            raise ValueError(f"phrases must have shape (n, {PHRASE_SHAPE}), got {phrases.shape}")
        if bar_offsets is None:
            bar_offsets = 4 * np.arange(len(phrases), dtype=np.int64)
        return cls(song_id, pack(phrases), np.asarray(bar_offsets, dtype=np.int64), float(tempo))

    @property
    def phrases(self) -> np.ndarray:
        return unpack(self.packed)

    def __len__(self) -> int:
        return int(self.packed.shape[0])


def as_songs(songs: Sequence) -> list[SongPhrases]:
    """Accept SongPhrases, ``(id, phrases)`` pairs or ``(id, phrases, bar_offsets)`` triples."""
    out: list[SongPhrases] = []
    for s in songs:
        if isinstance(s, SongPhrases):
            out.append(s)
        else:
            out.append(SongPhrases.from_phrases(*s))
    return out


class SongRows:
    """The packed phrases of several songs, read by row as one array without being copied into
    one: ``rows[idx]`` gathers the rows it is asked for (a batch at a time)."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        lengths = np.array([len(p) for p in self.parts], dtype=np.int64)
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.shape = (int(self.ends[-1]) if len(lengths) else 0, int(np.prod(PHRASE_SHAPE)) // 8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        song = np.searchsorted(self.ends, rows, side="right")
        local = rows - self.starts[song]
        out = np.empty((len(rows), self.shape[1]), np.uint8)
        for i in np.unique(song):  # a batch spans a few songs
            at = song == i
            out[at] = self.parts[i][local[at]]
        return out


@dataclass(frozen=True)
class Flat:
    """All phrases of a song list, concatenated, with each phrase's song index."""

    packed: np.ndarray | SongRows
    song: np.ndarray  # (N,) int64 index into the song list
    bar_offsets: np.ndarray
    starts: np.ndarray  # first row of each song
    tempo: np.ndarray  # (N,) float64 song tempo of each row (NaN: unknown)

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    def batches(self, rows: np.ndarray | None = None, batch: int = 256) -> Iterator[np.ndarray]:
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        for i in range(0, len(rows), batch):
            yield unpack(self.packed[rows[i : i + batch]])


def flatten(songs: Sequence[SongPhrases], copy: bool = True) -> Flat:
    """The songs' phrases as one :class:`Flat`; ``copy=False``: rows read from the songs' own
    arrays (:class:`SongRows`; for a task that only reads batches of them)."""
    lengths = np.array([len(s) for s in songs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(songs) else np.zeros(0, np.int64)
    if not copy:
        packed = SongRows([s.packed for s in songs])
        offsets = np.concatenate([s.bar_offsets for s in songs]) if len(songs) else np.zeros(0, np.int64)
    elif len(songs):
        packed = np.concatenate([s.packed for s in songs])
        offsets = np.concatenate([s.bar_offsets for s in songs])
    else:
        packed = np.zeros((0, int(np.prod(PHRASE_SHAPE)) // 8), np.uint8)
        offsets = np.zeros(0, np.int64)
    tempo = np.repeat(np.array([s.tempo for s in songs], dtype=np.float64), lengths)
    return Flat(packed, np.repeat(np.arange(len(songs)), lengths), offsets, starts.astype(np.int64), tempo)


def share_rows(songs: Sequence[SongPhrases], flat: Flat) -> list[SongPhrases]:
    """``songs`` again, their phrases now views of ``flat`` (``flatten(songs)``): a run that keeps
    both then holds each phrase once, not twice (0.2 MB per song of an LPD-5 collection)."""
    ends = np.append(flat.starts[1:], len(flat))
    return [SongPhrases(s.song_id, flat.packed[a:b], s.bar_offsets, s.tempo) for s, a, b in zip(songs, flat.starts, ends)]


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def hash_fraction(song_id: str) -> float:
    """A deterministic number in [0, 1) per song id (for splits that never depend on order)."""
    return stable_hash(song_id) / 2.0**64


def lpd_song_id(path: Path) -> str:
    """An LPD file's song id: the MSD id of its folder when there is one, else the file stem."""
    for part in (path.parent.name, path.stem):
        if MSD_ID.fullmatch(part):
            return part
    return path.stem


def find_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def is_store(path: Path) -> bool:
    return path.is_dir() and (path / "store.json").is_file()


def pick(items: Sequence, max_items: int | None, seed: int) -> list:
    """A deterministic subset (order kept) when there are more than ``max_items``."""
    items = list(items)
    if max_items is None or len(items) <= max_items:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=max_items, replace=False))
    return [items[i] for i in keep]


def read_song_file(path: Path) -> SongPhrases:
    """Read one LPD ``.npz`` or MIDI file into its phrases (raises InvalidInputError)."""
    from midivae.io import read_lpd, read_midi
    from midivae.song import cut_phrases

    if path.suffix.lower() == ".npz":
        song, song_id = read_lpd(path), lpd_song_id(path)
    else:
        song, song_id = read_midi(path), path.stem
    ph = cut_phrases(song)
    return SongPhrases(song_id, pack(ph.phrases), ph.bar_offsets, song.tempo)


def load_files(paths: Sequence[Path], min_phrases: int = 1) -> tuple[list[SongPhrases], list[str]]:
    """Read files, skipping unreadable ones (reported) and songs with too few phrases."""
    songs: list[SongPhrases] = []
    skipped: list[str] = []
    for p in paths:
        try:
            s = read_song_file(Path(p))
        except MidiVaeError as exc:
            skipped.append(str(exc))
            continue
        if len(s) >= min_phrases:
            songs.append(s)
        else:
            skipped.append(f"{p}: fewer than {min_phrases} non-empty phrases")
    return songs, skipped


@dataclass(frozen=True)
class EvalData:
    """The songs evaluated, the songs a fitted baseline (PCA) may learn from, and provenance."""

    test: list[SongPhrases]
    fit: list[SongPhrases]
    source: str
    split_rule: str
    skipped: tuple[str, ...] = ()
    built_from: str = ""  # for a store: the folder its songs were ingested from (common parent)
    unread_midi: int = 0  # MIDI files beside a folder's .npz songs: a folder is evaluated as one kind


def load_folder(
    folder: Path, max_songs: int | None, max_fit_songs: int, seed: int = 0, fit_fraction: float = 0.3
) -> EvalData:
    """Songs of a folder: by a hash of the song id, ``fit_fraction`` go to baseline fitting only."""
    folder = Path(folder)
    files = find_files(folder, (".npz",))
    unread_midi = len(find_files(folder, MIDI_SUFFIXES)) if files else 0
    files = files or find_files(folder, MIDI_SUFFIXES)
    if not files:
        raise NotFoundError(f"{folder}: no .npz or MIDI files found")
    ids = [lpd_song_id(f) if f.suffix == ".npz" else f.stem for f in files]
    fit_files = [f for f, i in zip(files, ids) if hash_fraction(i) < fit_fraction]
    test_files = [f for f, i in zip(files, ids) if hash_fraction(i) >= fit_fraction]
    test, skipped = load_files(pick(test_files, max_songs, seed))
    fit, skipped_fit = load_files(pick(fit_files, max_fit_songs, seed + 1))
    rule = f"songs with sha1(song id) in the lowest {fit_fraction:.0%} fit the baselines; the rest are evaluated"
    return EvalData(test, fit, str(folder), rule, tuple(skipped + skipped_fit), unread_midi=unread_midi)


def load_store_split(store_path: Path, split: str, max_songs: int | None, seed: int = 0) -> list[SongPhrases]:
    """One split of a phrase store, grouped by song (rows of a song kept in bar order)."""
    try:
        from midivae.data.store import PhraseStore
    except ImportError as exc:  # pragma: no cover - the store lands separately
        raise NotFoundError(f"{store_path}: phrase store support is not available ({exc})") from None
    store = PhraseStore.open(store_path)
    rows = np.asarray(store.rows(split), dtype=np.int64)
    ids = list(store.song_ids(rows))
    offsets = np.asarray(store.bar_offsets(rows), dtype=np.int64)
    tempi = store.tempi(rows)
    by_song: dict[str, list[int]] = {}
    for i, sid in enumerate(ids):
        by_song.setdefault(sid, []).append(i)
    chosen = pick(sorted(by_song), max_songs, seed)
    songs = []
    for sid in chosen:
        idx = np.array(by_song[sid])
        idx = idx[np.argsort(offsets[idx], kind="stable")]
        songs.append(SongPhrases(sid, np.asarray(store.packed(rows[idx]), dtype=np.uint8), offsets[idx], float(tempi[idx[0]])))
    return songs


def load_store_split_first(store_path: Path, split: str) -> tuple[list[SongPhrases], int]:
    """Every song of a phrase store, the songs of ``split`` first (then the other splits in the
    store's order), and how many of them come first: a whole-store version set searches the
    first ones' re-renderings among all the others."""
    from midivae.data.store import SPLITS

    first = load_store_split(store_path, split, None)
    rest = [s for other in SPLITS if other != split for s in load_store_split(store_path, other, None)]
    return first + rest, len(first)


def load_eval_data(
    data: Path,
    max_songs: int | None = None,
    fit_data: Path | None = None,
    max_fit_songs: int = 300,
    seed: int = 0,
    split: str = "test",
) -> EvalData:
    """Resolve ``--data`` (store, LPD folder or MIDI folder) and the data baselines may fit on."""
    data = Path(data)
    if not data.exists():
        raise NotFoundError(f"{data}: no such file or directory")
    if not data.is_dir():
        raise InvalidInputError(data, "a collection is evaluated: give a phrase store or a folder of .npz or MIDI files")
    if is_store(data):
        test = load_store_split(data, split, max_songs, seed)
        if fit_data is None:
            fit = load_store_split(data, "train", max_fit_songs, seed + 1)
            rule = f"{split} split of the store evaluated; baselines fit on its train split"
        else:
            fit = _load_fit(fit_data, max_fit_songs, seed)
            rule = f"{split} split of the store evaluated; baselines fit on {fit_data}"
        ev = EvalData(test, fit, str(data), rule, built_from=store_source_root(data))
    elif fit_data is not None:
        files = find_files(data, (".npz",)) or find_files(data, MIDI_SUFFIXES)
        test, skipped = load_files(pick(files, max_songs, seed))
        fit = _load_fit(fit_data, max_fit_songs, seed)
        ev = EvalData(test, fit, str(data), f"all songs evaluated; baselines fit on {fit_data}", tuple(skipped))
    else:
        ev = load_folder(data, max_songs, max_fit_songs, seed)
    if not ev.test:
        raise InvalidInputError(data, "no song with a non-empty phrase to evaluate")
    return ev


def store_source_root(store_path: Path) -> str:
    """The common parent folder of a store's song sources ('' when unknown), for the report's
    regenerate command."""
    import os

    try:
        from midivae.data.store import PhraseStore

        store = PhraseStore.open(store_path)
        paths = [s["source"] for s in store.songs() if s.get("source")]
        if not paths:
            return ""
        root = os.path.commonpath(paths)
        rel = os.path.relpath(root)
        return rel if rel.count("..") <= 2 else root
    except Exception:  # provenance is a nicety; never fail an evaluation on it
        return ""


def _load_fit(path: Path, max_songs: int, seed: int) -> list[SongPhrases]:
    path = Path(path)
    if is_store(path):
        return load_store_split(path, "train", max_songs, seed + 1)
    files = find_files(path, (".npz",)) or find_files(path, MIDI_SUFFIXES)
    return load_files(pick(files, max_songs, seed + 1))[0]
