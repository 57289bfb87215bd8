"""Search-vector algebra shared by the model's search head and the index (numpy only, no torch:
the index applies it to stored vectors without loading a model).

A search head with a song projection stores, in a search vector's leading content block, the
rotation of [unit posterior mean, sqrt(w) x unit song vector] (see midivae.model.search_head). A
query of *several* phrases (a whole file, a song of the index) is searched without the song
part: every one of its phrases must find its match anyway, and the song part, fitted to tell
phrases of one transcription apart from other files, pulls other transcriptions of the same song
away (docs/model_selection.md, "Queries of several phrases"). Taking it out is a linear map of
the content block: back to the unit-mean coordinates and rotated again, the song coordinates
left at zero.

Without the song part such a query would lose the song's tempo, which two transcriptions of one
song usually share: :func:`tempo_term` gives it back as a small term of the song distance, for
models whose search head reads tempo (docs/model_selection.md, "The song's tempo").
"""

from __future__ import annotations

import base64

import numpy as np

from midivae.song import known_tempo


def without_song_part(vectors: np.ndarray, mean_axes: np.ndarray | None) -> np.ndarray:
    """``vectors`` (``(..., width)``) with the song part of their content block set to zero.

    ``mean_axes``: ``(content, latent)``, the rotation's columns of the unit-mean coordinates
    (None: vectors without a song part, returned as they are). Columns after the content block
    (bar order, fingerprint signatures) are kept.
    """
    if mean_axes is None:
        return vectors
    out = np.array(vectors, dtype=np.float32, copy=True)
    c = mean_axes.shape[0]
    out[..., :c] = (out[..., :c] @ mean_axes) @ mean_axes.T
    return out


#: weight of the tempo term in the song distance of a query of several phrases (cosine distances;
#: a version's mean nearest-phrase distance is ~0.1-0.3), and the width of its kernel in octaves
#: (0.03: ~2%); docs/model_selection.md, "The song's tempo"
FILE_TEMPO_WEIGHT = 0.03
TEMPO_WIDTH = 0.03


def tempo_agreement(query_tempo: float | np.ndarray, tempi: np.ndarray, width: float = TEMPO_WIDTH) -> np.ndarray:
    """How well each of ``tempi`` (BPM, ``(n,)``) agrees with ``query_tempo`` (one, or ``(m,)``:
    an ``(m, n)`` result): exp(-(d / width)^2 / 2), d the distance of their log2 in octaves folded
    to [0, 0.5] (double and half time agree); 0 where either is unknown (NaN or not positive), so
    only evidence of a match counts."""
    q = np.asarray(query_tempo, dtype=np.float64)[..., None]
    t = np.asarray(tempi, dtype=np.float64)
    known = known_tempo(q) & known_tempo(t)
    x = np.log2(np.where(known, q, 1.0)) - np.log2(np.where(known, t, 1.0))
    d = np.abs(x - np.round(x))
    return np.where(known, np.exp(-0.5 * (d / width) ** 2), 0.0)


def tempo_term(query_tempo: float | np.ndarray, tempi: np.ndarray, weight: float = FILE_TEMPO_WEIGHT) -> np.ndarray:
    """What a query of several phrases adds to each candidate song's distance: ``weight`` x (1 -
    :func:`tempo_agreement`) (0 for a matching tempo, ``weight`` for another or an unknown one)."""
    return weight * (1.0 - tempo_agreement(query_tempo, tempi))


def encode_axes(mean_axes: np.ndarray) -> str:
    """The axes as text (base64 of float32), for an index catalogue's meta."""
    return base64.b64encode(np.ascontiguousarray(mean_axes, dtype="<f4").tobytes()).decode("ascii")


def decode_axes(text: str, content: int, latent: int) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if data.size != content * latent:
        raise ValueError(f"mean axes hold {data.size} values, expected {content} x {latent}")
    return data.reshape(content, latent).astype(np.float32)
