"""Fixtures for the index tests: a few real LPD-5 songs and the deterministic built-in encoder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from midivae.index.encoders import BarProfileEncoder
from midivae.io import read_lpd
from midivae.song import cut_phrases


def lpd_files(data_dir: Path, n: int) -> list[Path]:
    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))
    if len(files) < n:
        pytest.skip(f"need {n} LPD-5 songs under {data_dir}")
    return files[:: max(1, len(files) // n)][:n]


@pytest.fixture(scope="session")
def encoder() -> BarProfileEncoder:
    return BarProfileEncoder(32, seed=0)


@pytest.fixture(scope="session")
def song_dir(data_dir: Path, tmp_path_factory) -> Path:
    """A folder of 24 real LPD-5 songs, named by song, copied so tests may add and remove files."""
    out = tmp_path_factory.mktemp("songs")
    for f in lpd_files(data_dir, 24):
        shutil.copy(f, out / f"{f.parent.name}.npz")
    return out


@pytest.fixture(scope="session")
def real_vectors(data_dir: Path, encoder: BarProfileEncoder) -> np.ndarray:
    """Built-in-encoder vectors of ~3,000 real phrases (structured like real embeddings, not random)."""
    chunks = [cut_phrases(read_lpd(f)).phrases for f in lpd_files(data_dir, 160)]
    return encoder.encode(np.concatenate(chunks))[0]
