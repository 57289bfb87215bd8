"""The two small interfaces the index is built on: a vector index and a phrase encoder.

Everything above this layer (catalogue, search, CLI) talks to :class:`VectorIndex` only, so a
distributed vector database (Qdrant, Milvus, ...) can be added later as one more implementation
without touching the callers. Ids are caller-chosen int64 values that stay valid across
``add``/``remove``/``save``/``load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """A set of ``(id, vector)`` pairs answering k-nearest-neighbour queries.

    ``search`` returns ``(distances, ids)`` of shape ``(n_queries, k)``, nearest first;
    distances are in the index's metric (smaller is nearer); missing neighbours (fewer than
    ``k`` vectors) are ``inf`` / ``-1``.
    """

    dim: int
    metric: str

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def vectors(self, ids: np.ndarray) -> np.ndarray: ...

    def ids(self) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class Encoder(Protocol):
    """What the index needs from a model: phrases ``(n, *PHRASE_SHAPE)`` bool -> ``(mu, logvar)``.

    This is the contract of ``midivae.model.api.load_model``; the index stores posterior means.
    """

    latent_dim: int
    checkpoint_id: str

    def encode(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
