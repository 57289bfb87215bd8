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
"""

from __future__ import annotations

import base64

import numpy as np


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


def encode_axes(mean_axes: np.ndarray) -> str:
    """The axes as text (base64 of float32), for an index catalogue's meta."""
    return base64.b64encode(np.ascontiguousarray(mean_axes, dtype="<f4").tobytes()).decode("ascii")


def decode_axes(text: str, content: int, latent: int) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if data.size != content * latent:
        raise ValueError(f"mean axes hold {data.size} values, expected {content} x {latent}")
    return data.reshape(content, latent).astype(np.float32)
