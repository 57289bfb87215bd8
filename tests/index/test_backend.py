"""The index layers above VectorIndex work with any backend: a plain numpy one stands in here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from midivae.index import LatentIndex
from midivae.index import latent_index as li
from midivae.index.base import VectorIndex
from midivae.index.faiss_index import FaissIndex, IndexSpec, normalise
from midivae.index.latent_index import IndexWriter
from midivae.index.search import query_from_song, rank_songs
from midivae.index.sources import discover


class NumpyIndex:
    """A minimal VectorIndex: dict of vectors, brute-force search (what a remote backend must offer)."""

    def __init__(self, dim: int, spec: IndexSpec = IndexSpec()) -> None:
        self.dim, self.metric, self._data = dim, spec.metric, {}

    def __len__(self) -> int:
        return len(self._data)

    def add(self, ids, vectors) -> None:
        vectors = normalise(vectors) if self.metric == "cosine" else np.asarray(vectors, np.float32)
        self._data.update(zip(np.asarray(ids).tolist(), vectors))

    def remove(self, ids) -> int:
        return sum(self._data.pop(int(i), None) is not None for i in ids)

    def ids(self) -> np.ndarray:
        return np.array(sorted(self._data), dtype=np.int64)

    def vectors(self, ids) -> np.ndarray:
        return np.stack([self._data[int(i)] for i in ids])

    def search(self, queries, k):
        ids = self.ids()
        base = self.vectors(ids)
        q = normalise(queries) if self.metric == "cosine" else queries
        d = 1 - q @ base.T if self.metric == "cosine" else np.linalg.norm(q[:, None] - base[None], axis=2)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d, order, 1).astype(np.float32), ids[order]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ids = self.ids()
        np.save(directory / "v.npy", self.vectors(ids) if len(ids) else np.zeros((0, self.dim), np.float32))
        np.save(directory / "i.npy", ids)
        (directory / "m.json").write_text(json.dumps({"dim": self.dim, "metric": self.metric}))

    @classmethod
    def load(cls, directory: Path) -> "NumpyIndex":
        meta = json.loads((directory / "m.json").read_text())
        index = cls(meta["dim"], IndexSpec(metric=meta["metric"]))
        index._data = dict(zip(np.load(directory / "i.npy").tolist(), np.load(directory / "v.npy")))
        return index


def build(path: Path, song_dir: Path, encoder, backend: str) -> None:
    with IndexWriter.create(path, encoder.checkpoint_id, encoder.latent_dim, backend=backend) as w:
        for s in discover([song_dir]):
            p = s.load()
            w.add_song(s.song_id, encoder.encode(p.phrases)[0], p.bar_offsets)


def test_another_backend_gives_the_same_answers(song_dir, encoder, tmp_path, monkeypatch):
    monkeypatch.setitem(li.BACKENDS, "numpy", NumpyIndex)
    assert isinstance(NumpyIndex(4), VectorIndex) and isinstance(FaissIndex(4), VectorIndex)
    build(tmp_path / "np", song_dir, encoder, "numpy")
    build(tmp_path / "fx", song_dir, encoder, "faiss")
    with LatentIndex.open(tmp_path / "np") as a, LatentIndex.open(tmp_path / "fx") as b:
        assert isinstance(a.phrases, NumpyIndex)
        for song in a.catalogue.song_ids()[:4]:
            ha = rank_songs(a, query_from_song(a, song, None, None, False), k=5)
            hb = rank_songs(b, query_from_song(b, song, None, None, False), k=5)
            assert [h.song_id for h in ha] == [h.song_id for h in hb]
            assert [h.distance for h in ha] == pytest.approx([h.distance for h in hb], abs=1e-5)
