"""Similarity search: a persistent latent index of phrase and song vectors, queried by MIDI file.

Public API::

    from midivae.index import build_index, add_to_index, remove_from_index, LatentIndex, search
    report = build_index(["songs/"], "idx/", encoder)          # encoder: see index.base.Encoder
    with LatentIndex.open("idx/") as index:
        result = search(index, "query.mid", lambda: encoder, k=10)
"""

from midivae.index.base import Encoder, VectorIndex
from midivae.index.build import BuildReport, add_to_index, build_index, remove_from_index
from midivae.index.encoders import BarProfileEncoder, resolve_encoder
from midivae.index.faiss_index import FaissIndex, IndexSpec
from midivae.index.latent_index import IndexInfo, IndexWriter, LatentIndex
from midivae.index.search import SearchResult, SongHit, rank_songs, search

__all__ = [
    "BarProfileEncoder", "BuildReport", "Encoder", "FaissIndex", "IndexInfo", "IndexSpec", "IndexWriter",
    "LatentIndex", "SearchResult", "SongHit", "VectorIndex", "add_to_index", "build_index", "rank_songs",
    "remove_from_index", "resolve_encoder", "search",
]
