"""AllMusic genre labels (MSD Top-MAGD lists shipped with LPD) for the genre-consistency task.

A song counts only when it has exactly one label: a song in two lists has no single right
answer. Song ids are matched as MSD track ids; an id that is an LPD md5 (or a path holding
one) is mapped to its MSD id through ``lpd5/cleansed_ids.txt`` when that file is present.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from midivae.evaluate.data import MSD_ID

_LIST = re.compile(r"id_list_(.+)\.txt$")
_MD5 = re.compile(r"[0-9a-f]{32}")


def default_data_root() -> Path:
    """$MIDIVAE_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("MIDIVAE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def default_labels_dir() -> Path:
    return default_data_root() / "lpd5" / "labels" / "amg"


def read_genre_lists(labels_dir: Path) -> dict[str, set[str]]:
    """MSD id -> the set of genres whose ``id_list_<Genre>.txt`` names it."""
    out: dict[str, set[str]] = {}
    for path in sorted(Path(labels_dir).glob("id_list_*.txt")):
        m = _LIST.search(path.name)
        if not m:
            continue
        genre = m.group(1).replace("_", "/") if m.group(1) == "Pop_Rock" else m.group(1)
        for line in path.read_text().split():
            if MSD_ID.fullmatch(line):
                out.setdefault(line, set()).add(genre)
    return out


def _md5_map(labels_dir: Path) -> dict[str, str]:
    ids = Path(labels_dir).parents[1] / "cleansed_ids.txt"
    if not ids.is_file():
        return {}
    out = {}
    for line in ids.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def msd_id_of(song_id: str, md5_map: dict[str, str]) -> str | None:
    m = MSD_ID.search(song_id)
    if m:
        return m.group(0)
    m = _MD5.search(song_id)
    if m and m.group(0) in md5_map:
        return md5_map[m.group(0)]
    return None


def single_genre_labels(song_ids: Iterable[str], labels_dir: Path | None = None) -> dict[str, str]:
    """song id -> genre, for the songs that have exactly one AllMusic genre."""
    labels_dir = Path(labels_dir) if labels_dir is not None else default_labels_dir()
    if not labels_dir.is_dir():
        return {}
    lists = read_genre_lists(labels_dir)
    md5_map = _md5_map(labels_dir)
    out: dict[str, str] = {}
    for sid in song_ids:
        msd = msd_id_of(sid, md5_map)
        genres = lists.get(msd, set()) if msd else set()
        if len(genres) == 1:
            out[sid] = next(iter(genres))
    return out
