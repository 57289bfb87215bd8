"""Phrase VAEs: architectures (by name), checkpoints, training and the numpy-facing API."""

from midivae.model.base import ARCHITECTURES, PhraseVAE, register
from midivae.model import reference  # noqa: F401  (registers "reference")

try:  # the retrieval-oriented variant, when present
    import midivae.model.retrieval  # noqa: F401
except ModuleNotFoundError as _exc:
    if _exc.name != "midivae.model.retrieval":
        raise

from midivae.model.api import Model, load_model, pretrained_path, read_phrases  # noqa: E402
from midivae.model.checkpoint import checkpoint_id, load_checkpoint, save_checkpoint  # noqa: E402
from midivae.model.config import TrainConfig  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "Model",
    "PhraseVAE",
    "TrainConfig",
    "checkpoint_id",
    "load_checkpoint",
    "load_model",
    "pretrained_path",
    "read_phrases",
    "register",
    "save_checkpoint",
]
