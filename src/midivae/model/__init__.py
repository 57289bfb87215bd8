"""Phrase VAEs: architectures (by name), checkpoints, training and the numpy-facing API."""

from midivae.model.base import ARCHITECTURES, PhraseVAE, register
from midivae.model import reference  # noqa: F401  (registers "reference")

try:  # the retrieval-oriented variant, when present
    import midivae.model.retrieval  # noqa: F401
except ModuleNotFoundError as _exc:
    if _exc.name != "midivae.model.retrieval":
        raise

__all__ = ["ARCHITECTURES", "PhraseVAE", "register"]
