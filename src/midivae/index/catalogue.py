"""The SQLite catalogue: which songs and phrases an index holds, and which model encoded them.

Vector ids (phrase vectors) and song keys (song vectors) are allocated here, from counters that
only grow, so an id never changes meaning across ``add`` / ``remove``. A catalogue file belongs to
one immutable generation of the index folder: readers open it read-only and ``immutable``, the
writer works on a fresh copy inside the next generation.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midivae.errors import NotFoundError, VectorIndexError
from midivae.song import known_tempo

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE songs (
    song_key INTEGER PRIMARY KEY,
    song_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    n_phrases INTEGER NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE phrases (
    vector_id INTEGER PRIMARY KEY,
    song_key INTEGER NOT NULL REFERENCES songs(song_key) ON DELETE CASCADE,
    bar_offset INTEGER NOT NULL
);
CREATE INDEX phrases_by_song ON phrases(song_key);
CREATE INDEX songs_by_hash ON songs(content_hash);
"""
#: each song's tempo (BPM) where known; a catalogue from before it has none (read as unknown)
_TEMPO_SCHEMA = "CREATE TABLE IF NOT EXISTS song_tempo (song_key INTEGER PRIMARY KEY, bpm REAL NOT NULL);"
#: each phrase's notes (midivae.verify.PhraseNotes.to_blobs), which the search's exact verify reads;
#: a catalogue created before them has none and its meta lacks NOTES_KEY (searched without verify)
_NOTES_SCHEMA = "CREATE TABLE IF NOT EXISTS phrase_notes (vector_id INTEGER PRIMARY KEY, notes BLOB NOT NULL);"
NOTES_KEY = "phrase_notes"


@dataclass(frozen=True)
class SongRecord:
    song_key: int
    song_id: str
    title: str
    path: str
    source: str
    content_hash: str
    n_phrases: int
    added_at: str


@dataclass(frozen=True)
class PhraseTable:
    """Every phrase of the catalogue as arrays, grouped by song (for vectorised ranking)."""

    vector_ids: np.ndarray  # (m,) int64, sorted by (song_key, bar_offset)
    song_keys: np.ndarray  # (m,) int64
    bar_offsets: np.ndarray  # (m,) int64

    def song_ranges(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(start, stop)`` rows of each song key in this table."""
        keys = np.asarray(keys, dtype=np.int64)
        return np.searchsorted(self.song_keys, keys, "left"), np.searchsorted(self.song_keys, keys, "right")


class Catalogue:
    """A thin typed layer over one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path, writable: bool) -> None:
        self._conn = conn
        self.path = path
        self.writable = writable
        self._keeps_notes: bool | None = None

    # ---- opening --------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, meta: dict[str, str]) -> Catalogue:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(_SCHEMA + _TEMPO_SCHEMA + _NOTES_SCHEMA)
        cat = cls(conn, Path(path), writable=True)
        cat.begin()
        cat.set_meta({"schema_version": str(SCHEMA_VERSION), "next_vector_id": "0", "next_song_key": "0",
                      "created_at": _now(), NOTES_KEY: "1", **meta})
        return cat

    @classmethod
    def open(cls, path: Path, writable: bool = False) -> Catalogue:
        path = Path(path)
        if not path.is_file():
            raise VectorIndexError(f"{path}: catalogue missing")
        try:
            if writable:
                conn = sqlite3.connect(path, isolation_level=None)
            else:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                       isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise VectorIndexError(f"{path}: corrupt catalogue ({exc})") from None
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise VectorIndexError(f"{path}: catalogue schema {version and version[0]} is not supported")
        cat = cls(conn, path, writable)
        if writable:
            conn.execute(_TEMPO_SCHEMA)
            cat.begin()
        return cat

    def begin(self) -> None:
        self._conn.execute("BEGIN")

    def commit_and_close(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.close()

    def close(self) -> None:
        self._conn.close()

    # ---- meta -----------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                               [(k, str(v)) for k, v in values.items()])

    def _take(self, counter: str, n: int) -> int:
        first = int(self.meta()[counter])
        self.set_meta({counter: str(first + n)})
        return first

    # ---- songs ----------------------------------------------------------------------------------
    def add_song(self, song_id: str, title: str, path: str, source: str, content_hash: str,
                 bar_offsets: np.ndarray, tempo: float = float("nan"),
                 notes: list[bytes] | None = None) -> tuple[int, np.ndarray]:
        """Insert a song and its phrases (and their notes, where the catalogue keeps them); returns
        its song key and the new phrase vector ids."""
        if self.find(song_id) is not None:
            raise VectorIndexError(f"song id {song_id!r} is already in the index")
        n = int(len(bar_offsets))
        song_key = self._take("next_song_key", 1)
        first = self._take("next_vector_id", n)
        vector_ids = np.arange(first, first + n, dtype=np.int64)
        self._conn.execute("INSERT INTO songs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (song_key, song_id, title, path, source, content_hash, n, _now()))
        self._conn.executemany("INSERT INTO phrases VALUES (?, ?, ?)",
                               zip(vector_ids.tolist(), [song_key] * n, np.asarray(bar_offsets).tolist()))
        if known_tempo(tempo):
            self._conn.execute("INSERT OR REPLACE INTO song_tempo VALUES (?, ?)", (song_key, float(tempo)))
        if self.keeps_notes():
            if notes is None:  # vectors added without their notes: the index searches without verify from now on
                self.set_meta({NOTES_KEY: "0"})
                self._keeps_notes = False
            elif len(notes) != n:
                raise VectorIndexError(f"song {song_id!r}: notes of {len(notes)} phrases for {n} phrases")
            else:
                self._conn.executemany("INSERT INTO phrase_notes VALUES (?, ?)", zip(vector_ids.tolist(), notes))
        return song_key, vector_ids

    def remove_song(self, song_id: str) -> tuple[int, np.ndarray]:
        record = self.get(song_id)
        vids = np.array([r[0] for r in self._conn.execute(
            "SELECT vector_id FROM phrases WHERE song_key = ?", (record.song_key,))], dtype=np.int64)
        self._conn.execute("DELETE FROM phrases WHERE song_key = ?", (record.song_key,))
        self._conn.execute("DELETE FROM songs WHERE song_key = ?", (record.song_key,))
        self._conn.execute("DELETE FROM song_tempo WHERE song_key = ?", (record.song_key,))
        try:  # (kept or left from before a song without notes turned them off)
            self._conn.executemany("DELETE FROM phrase_notes WHERE vector_id = ?", [(v,) for v in vids.tolist()])
        except sqlite3.OperationalError:  # a catalogue from before notes were kept
            pass
        return record.song_key, vids

    def find(self, song_id: str) -> SongRecord | None:
        row = self._conn.execute("SELECT * FROM songs WHERE song_id = ?", (song_id,)).fetchone()
        return SongRecord(*row) if row else None

    def get(self, song_id: str) -> SongRecord:
        record = self.find(song_id)
        if record is None:
            raise NotFoundError(f"song id {song_id!r} is not in the index")
        return record

    def by_keys(self, keys: list[int]) -> dict[int, SongRecord]:
        out: dict[int, SongRecord] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT * FROM songs WHERE song_key IN ({marks})", chunk):
                out[row[0]] = SongRecord(*row)
        return out

    def by_hash(self, content_hash: str) -> list[SongRecord]:
        rows = self._conn.execute("SELECT * FROM songs WHERE content_hash = ?", (content_hash,)).fetchall()
        return [SongRecord(*r) for r in rows]

    def song_ids(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT song_id FROM songs ORDER BY song_key")]

    def n_songs(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0])

    def n_phrases(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM phrases").fetchone()[0])

    def song_tempi(self) -> dict[int, float]:
        """Song key -> tempo (BPM) of the songs whose tempo is known."""
        try:
            return {int(k): float(v) for k, v in self._conn.execute("SELECT song_key, bpm FROM song_tempo")}
        except sqlite3.OperationalError:  # a catalogue from before tempi were kept
            return {}

    def keeps_notes(self) -> bool:
        """Whether every phrase's notes are kept (a catalogue created before they were: no)."""
        if self._keeps_notes is None:
            self._keeps_notes = self.meta().get(NOTES_KEY) == "1"
        return self._keeps_notes

    def phrase_notes(self, vector_ids: np.ndarray) -> list[bytes]:
        """The stored notes of each phrase (in the order asked; all must be in the catalogue)."""
        vids = [int(v) for v in np.asarray(vector_ids).ravel()]
        found: dict[int, bytes] = {}
        for i in range(0, len(vids), 500):
            chunk = vids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT vector_id, notes FROM phrase_notes WHERE vector_id IN ({marks})",
                                            chunk).fetchall())
        missing = [v for v in vids if v not in found]
        if missing:
            raise VectorIndexError(f"{self.path}: no notes for phrase vector {missing[0]} ({len(missing)} missing)")
        return [found[v] for v in vids]

    def phrase_table(self) -> PhraseTable:
        rows = np.array(self._conn.execute(
            "SELECT vector_id, song_key, bar_offset FROM phrases ORDER BY song_key, bar_offset").fetchall(),
            dtype=np.int64).reshape(-1, 3)
        return PhraseTable(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy())

    def song_phrases(self, song_key: int) -> tuple[np.ndarray, np.ndarray]:
        """Vector ids and bar offsets of one song, in bar order."""
        rows = np.array(self._conn.execute(
            "SELECT vector_id, bar_offset FROM phrases WHERE song_key = ? ORDER BY bar_offset", (song_key,)
        ).fetchall(), dtype=np.int64).reshape(-1, 2)
        return rows[:, 0].copy(), rows[:, 1].copy()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
