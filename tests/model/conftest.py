"""Fixtures for model tests: a small real phrase store built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from midivae.model.config import TrainConfig
from midivae.model.reference import ReferenceConfig

#: A reference VAE small enough for tests that train (seconds, not minutes).
TINY = ReferenceConfig(latent_dim=8, channels1=4, channels2=8)


def lpd_files(data_dir: Path, n: int) -> list[Path]:
    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:n]
    if len(files) < n:
        pytest.skip("LPD-5 songs not found")
    return files


@pytest.fixture(scope="session")
def tiny_store(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phrase store of 12 real LPD-5 songs (a few hundred phrases)."""
    from midivae.data.ingest import ingest

    out = tmp_path_factory.mktemp("store") / "store"
    ingest(lpd_files(data_dir, 12), out, workers=1)
    return out


@pytest.fixture(scope="session")
def real_phrases(data_dir: Path) -> np.ndarray:
    from midivae.model import read_phrases

    phrases = [read_phrases(f) for f in lpd_files(data_dir, 3)]
    return np.concatenate(phrases)


def _quick_config(**changes) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, lr=2e-3, seed=3, threads=2, val_size=16, train_limit=48, patience=0)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def quick_config():
    """Factory of small, fast TrainConfigs (keyword arguments override)."""
    return _quick_config


@pytest.fixture
def tiny() -> ReferenceConfig:
    return TINY
