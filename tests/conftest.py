"""Shared fixtures: where the real data lives, and small phrase sets built in code."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from midivae.constants import PHRASE_SHAPE

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("MIDIVAE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set MIDIVAE_DATA)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def random_phrases(n: int, density: float = 0.01, seed: int = 0) -> np.ndarray:
    """Sparse random phrases with at least one note each."""
    gen = np.random.default_rng(seed)
    phrases = gen.random((n, *PHRASE_SHAPE)) < density
    phrases.reshape(n, -1)[:, 0] = True
    return phrases
