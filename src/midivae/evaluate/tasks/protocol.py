"""Task 1: the original work's protocol, two sampled encodings of each song's first phrase."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from midivae.evaluate.data import SongPhrases, as_songs, pick, unpack
from midivae.evaluate.embedding import Embedding, EmbedFn, as_embedding
from midivae.evaluate.metrics import pairwise, rank_of_target, tie_tolerance
from midivae.evaluate.tasks import chunks
from midivae.evaluate.tasks.chunks import _hits

ORIGINAL_PROTOCOL_SONGS = 1086


def original_protocol(
    songs: Sequence[SongPhrases],
    embed: Embedding | EmbedFn,
    distance: str | None = None,
    *,
    max_songs: int | None = ORIGINAL_PROTOCOL_SONGS,
    seed: int = 0,
) -> dict[str, float]:
    """The original work's protocol: two sampled encodings of each song's first phrase.

    Each song's first non-empty phrase is encoded twice (z = mu + sigma * eps for a VAE; a
    deterministic embedding gives the same vector twice); for each song, the first encoding
    queries all second encodings. Top-1: its own second encoding is the nearest; MRR of it.
    """
    emb = as_embedding(embed, distance)
    songs = [s for s in as_songs(songs) if len(s)]
    songs = pick(songs, max_songs, seed)
    if len(songs) < 2:
        raise ValueError("the original protocol needs at least 2 songs")
    first = np.stack([s.packed[0] for s in songs])  # packed: unpacked a chunk at a time
    tempo = np.array([s.tempo for s in songs], dtype=np.float64)
    rng = np.random.default_rng(seed)
    z1 = emb.prepare(_sampled_in_chunks(emb, first, rng, tempo))
    z2 = emb.prepare(_sampled_in_chunks(emb, first, rng, tempo))
    d = pairwise(z1, z2)
    stats = rank_of_target(d, np.arange(len(songs)), tie_tolerance(z1, z2))
    out = _hits(stats, (1,))
    return {"top1": out["hit@1"], "top1_lo95": out["hit@1_lo95"], "top1_hi95": out["hit@1_hi95"], "mrr": out["mrr"],
            "n_songs": len(songs), "chance_top1": 1.0 / len(songs)}


def _sampled_in_chunks(emb: Embedding, packed: np.ndarray, rng: np.random.Generator, tempo: np.ndarray) -> np.ndarray:
    """``emb.encode_sampled`` of packed phrases, ``QUERY_CHUNK`` at a time: one batch of 1,086
    phrases through the model and its search head peaked at ~1.4 MB per phrase. The chunks draw
    from ``rng`` in the order one call would, so the vectors are the same."""
    return np.concatenate([np.asarray(emb.encode_sampled(unpack(packed[a : a + chunks.QUERY_CHUNK]), rng,
                                                         tempo[a : a + chunks.QUERY_CHUNK]))
                           for a in range(0, len(packed), chunks.QUERY_CHUNK)])
