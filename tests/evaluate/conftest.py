"""Small synthetic song sets whose retrieval answers are known exactly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from midivae.constants import PHRASE_SHAPE
from midivae.evaluate.data import SongPhrases


def random_phrases(rng: np.random.Generator, n: int, density: float = 0.01) -> np.ndarray:
    ph = rng.random((n, *PHRASE_SHAPE)) < density
    ph[:, 0, 0, 40, 1] = True  # never empty
    return ph


def repeated_songs(n_songs: int = 12, half: int = 3, seed: int = 0) -> list[SongPhrases]:
    """Songs whose second half repeats their first half exactly (excerpt answer known)."""
    rng = np.random.default_rng(seed)
    songs = []
    for i in range(n_songs):
        first = random_phrases(rng, half)
        songs.append(SongPhrases.from_phrases(f"song{i:02d}", np.concatenate([first, first])))
    return songs


@pytest.fixture
def make_songs():
    return repeated_songs


@pytest.fixture
def songs() -> list[SongPhrases]:
    return repeated_songs()


@pytest.fixture
def lpd_dir() -> Path:
    """The shared LPD-5 folder ($MIDIVAE_DATA or ../shared/data); skip when absent."""
    root = Path(os.environ.get("MIDIVAE_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
    path = root / "lpd5" / "lpd_5_cleansed"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path.resolve()


@pytest.fixture(autouse=True)
def quick_timing(monkeypatch):
    """The cost task's timings are not what these tests check: five passes, not a second of them."""
    monkeypatch.setattr("midivae.evaluate.tasks.timing.TIMING_MIN_SECONDS", 0.0)


@pytest.fixture
def mixed_version_folder(lpd_dir, tmp_path) -> Path:
    """A version folder holding real cross-format versions: four shared LPD-5 songs as ``.npz`` and
    as the MIDI files written from them (``midi/lpd5_rendered``), four other songs as ``.npz``
    distractors, and a ``versions.csv`` that also names one file the folder lacks."""
    import csv
    import shutil

    data = lpd_dir.parents[1]
    rendered = data / "midi" / "lpd5_rendered"
    if not (rendered / "index.csv").is_file():
        pytest.skip(f"shared MIDI renderings not found at {rendered}")
    with (rendered / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    folder = tmp_path / "versions"
    (folder / "midi").mkdir(parents=True)
    (folder / "npz").mkdir()
    table = [("file", "song")]
    for row in rows[:4]:
        npz = data / row["npz"]
        shutil.copy(rendered / row["file"], folder / "midi" / row["file"])
        shutil.copy(npz, folder / "npz" / npz.name)
        table += [(f"midi/{row['file']}", row["md5"]), (f"npz/{npz.name}", row["md5"])]
    rendered_md5 = {row["md5"] for row in rows}
    for npz in sorted(p for p in lpd_dir.rglob("*.npz") if p.stem not in rendered_md5)[:4]:
        shutil.copy(npz, folder / "npz" / npz.name)
    table.append(("midi/absent.mid", "elsewhere"))
    with (folder / "versions.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(table)
    return folder
