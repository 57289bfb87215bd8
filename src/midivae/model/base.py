"""The contract every phrase VAE architecture follows, and the registry that names them.

A checkpoint stores an architecture *name* and its Config; :data:`ARCHITECTURES` turns the name
back into a class, so a model is rebuilt from the checkpoint alone.

Contract (other modules code against it):

* ``encode(x)``: ``x`` float ``(n, 4, 48, 84, 5)`` in {0, 1} -> ``(mu, logvar)``, each ``(n, latent_dim)``.
* ``decode(z)``: ``(n, latent_dim)`` -> logits ``(n, 4, 48, 84, 5)``.
* ``loss(x, beta)``: a dict of scalar tensors with at least ``"loss"``, ``"recon"``, ``"kl"``;
  subclasses may add keys (the trainer logs every key it gets). The default is the Bernoulli
  reconstruction (binary cross-entropy summed over cells, mean over the batch) plus ``beta`` times
  the KL divergence to N(0, I) (summed over latent dims, mean over the batch).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from midivae.constants import PHRASE_SHAPE


class BinaryCrossEntropySum(torch.autograd.Function):
    """``sum(BCE(sigmoid(logits), x))`` for targets in {0, 1}, as softplus(l) - l * x.

    Same value and gradient as ``F.binary_cross_entropy_with_logits(..., reduction="sum")``
    but with fewer full-size temporaries: the loss runs over 80,640 cells per phrase, where
    elementwise passes cost as much as a convolution layer.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits, target)
        return F.softplus(logits).sum() - torch.dot(logits.reshape(-1), target.reshape(-1))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, target = ctx.saved_tensors
        out = torch.sigmoid(logits)
        out.sub_(target).mul_(grad)
        return out, None


class PhraseVAE(torch.nn.Module):
    """Base class of phrase VAEs. Subclasses set ``name`` and ``Config`` and implement encode/decode."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        #: short sha256 of the weights file this model was loaded from (None for a fresh model).
        self.checkpoint_id: str | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    # --- to implement -------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def encode_mean(self, x: Tensor) -> Tensor:
        """The posterior mean alone (what an index stores); override where that is cheaper."""
        return self.encode(x)[0]

    @property
    def bar_part_dim(self) -> int:
        """Size of the flattened per-bar part :meth:`encode_with_bars` gives (0: none)."""
        return 0

    def encode_with_bars(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The posterior ``(mu, logvar)`` and, where the architecture pools bar features into it,
        each bar's own share of mu's content part ``(n, 4, k)`` (they average to it): the bar
        order that a mean over bars forgets, for re-ranking a search. None where there is no
        such pooling. One encoder pass for all three."""
        return (*self.encode(x), None)

    def init_state_from(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weights of another configuration of this architecture, adapted to this one where the
        architecture knows how (``train --init-from``); by default they are used as they are."""
        return state

    # --- shared -------------------------------------------------------------------------------
    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + sigma * eps, eps from torch's global RNG (the trainer seeds it per batch)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    @staticmethod
    def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(q(z|x) || N(0, I)) per sample and latent dim, ``(n, latent_dim)``."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    @staticmethod
    def recon_loss(logits: Tensor, x: Tensor) -> Tensor:
        """Bernoulli negative log-likelihood: BCE summed over all cells, mean over the batch."""
        return BinaryCrossEntropySum.apply(logits.float(), x.float()) / x.shape[0]

    def loss(self, x: Tensor, beta: float, free_bits: float = 0.0) -> dict[str, Tensor]:
        """``recon + beta * KL``. With ``free_bits`` > 0, each latent dim's batch-mean KL below
        that many nats is not penalised (the reported ``"kl"`` stays the true KL)."""
        mu, logvar = self.encode(x)
        logits = self.decode(self.reparameterize(mu, logvar))
        recon = self.recon_loss(logits, x)
        kl_dims = self.kl_per_dim(mu.float(), logvar.float()).mean(dim=0)
        kl = kl_dims.sum()
        penalised = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
        return {"loss": recon + beta * penalised, "recon": recon, "kl": kl}

    #: True when ``encode`` takes uint8 0/1 phrases as they are (the API then skips a float copy
    #: of all 80,640 cells, a third of the retrieval encoder's time).
    encodes_uint8: bool = False

    #: True when ``loss`` wants batches of song pairs: rows ``i`` and ``i + n // 2`` are two
    #: phrases of one song (the trainer then builds such batches and passes ``song_pairs=True``).
    wants_song_pairs: bool = False

    #: True when ``loss`` compares each batch with a randomly altered copy of it, its *view*: the
    #: trainer then builds the views itself from the rows it holds (:meth:`make_view`, on host
    #: threads, ahead of the device) and passes them as ``loss(..., view=...)``.
    wants_views: bool = False

    def make_view(self, cells: Any, rng: Any) -> Tensor:
        """The view of a batch given by its on cells (:class:`midivae.data.augment.Cells`), drawn
        from the numpy generator ``rng``, in the form ``loss(view=...)`` takes."""
        raise NotImplementedError(f"{self.name} takes no views")

    def flops_per_sample(self) -> int | None:
        """Analytic forward multiply-add FLOPs per sample (2 per MAC), if the architecture knows it."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.name,
            "config": dataclasses.asdict(self.config),
            "parameters": sum(p.numel() for p in self.parameters()),
            "input_shape": list(PHRASE_SHAPE),
        }


ARCHITECTURES: dict[str, type[PhraseVAE]] = {}


def register(cls: type[PhraseVAE]) -> type[PhraseVAE]:
    """Class decorator: make an architecture loadable by its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    config = getattr(cls, "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass")
    if not any(f.name == "latent_dim" for f in dataclasses.fields(config)):
        raise TypeError(f"{cls.__name__}.Config needs a 'latent_dim' field")
    existing = ARCHITECTURES.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"architecture name {name!r} is already taken by {existing.__qualname__}")
    ARCHITECTURES[name] = cls
    return cls
