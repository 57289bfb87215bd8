"""midivae: find similar music in a MIDI collection with a VAE and a latent-vector index.

The public API, imported lazily so that ``import midivae`` (and the CLI) start fast::

    model = midivae.load_model()            # the shipped model (or load_model("run/best"))
    phrases = midivae.read_phrases("song.mid")   # bool (n, 4, 48, 84, 5)
    mu, logvar = model.encode(phrases)
    probs = model.decode(mu)
"""

from __future__ import annotations

import importlib
from typing import Any

from midivae.errors import MidiVaeError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "midivae.model.api",
    "read_phrases": "midivae.model.api",
    "read_midi": "midivae.io",
    "read_lpd": "midivae.io",
    "write_midi": "midivae.io",
    "cut_phrases": "midivae.song",
    "PhraseStore": "midivae.data.store",
    "ingest": "midivae.data.ingest",
}

__all__ = ["MidiVaeError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'midivae' has no attribute {name!r}")
