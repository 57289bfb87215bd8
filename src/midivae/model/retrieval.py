"""The retrieval VAE: a bar-level encoder pooled over bars, trained to keep altered copies close.

Why this shape (measured in docs/model_selection.md):

* Repeated sections rarely fall on the same 4-bar grid, so a phrase and its repeat are offset by
  1-3 bars. Each bar is encoded alone by one shared small CNN and the phrase latent is built
  mainly from the *mean* of the bar features (order-free, like the "bag of bars" baseline) plus
  a small order-aware term, so the decoder can still put bars back in order.
* Two transcriptions of a song differ by transposition, dropped notes, small time shifts,
  instrument moves, octave changes and dropped tracks. ``loss`` encodes a random altered view
  of every phrase (midivae.data.augment) and adds an NT-Xent term on the posterior means: the
  view must find its own phrase among the batch (cosine similarity). That both pulls an altered
  phrase to its original and keeps different phrases apart, which is what search needs.
* Search uses the posterior mean, sampling protocols use ``mu + sigma * eps``: a small KL weight
  (``--beta``) and a bounded log-variance keep sigma well below the spread between songs.

Cost: the per-bar encoder works on a time-max-pooled bar (16 steps per bar), a few MFLOP per
bar; the decoder is two transposed convolutions per bar. Only the original view is decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from midivae.constants import (
    BARS_PER_PHRASE,
    BASS,
    DRUMS,
    GUITAR,
    N_PITCHES,
    N_TRACKS,
    PHRASE_SHAPE,
    PIANO,
    STEPS_PER_BAR,
    STRINGS,
)
from midivae.data.augment import AugmentConfig, Cells, random_cells, to_cells, to_dense
from midivae.model.base import PhraseVAE, register

_POOL_T = 3  # encoder time pooling: 48 -> 16 steps per bar (sixteenth notes)
_PT, _PP = 4, 12  # encoder patch: 4 sixteenths (a beat) x 12 pitches (an octave) x all tracks
_GT, _GP = STEPS_PER_BAR // _POOL_T // _PT, N_PITCHES // _PP  # encoder patch grid per bar: 4 x 7
_DGT = 8  # decoder patch grid per bar: 8 x 7 ...
_DT = STEPS_PER_BAR // _DGT  # ... of 6 steps x 12 pitches x all tracks


@dataclass(frozen=True)
class RetrievalConfig:
    """Hyper-parameters of the retrieval VAE (architecture, consistency term, augmentation)."""

    latent_dim: int = 128
    patch_dim: int = 64
    bar_dim: int = 256
    #: width of the linear whole-bar path (0: off), see BarEncoder
    linear_dim: int = 0
    #: add a channel with piano, guitar and strings merged (instrument-move robustness)
    merge_pitched: bool = False
    #: with orch_dim > 0 the latent is [content ; orchestration]: the content part
    #: (latent_dim - orch_dim dims) is encoded from drums, bass and piano/guitar/strings *merged*,
    #: so moving notes between those instruments cannot change it; a small second encoder gives
    #: the orchestration part, which the decoder needs to put notes on the right track. The
    #: orchestration part is scaled by orch_scale in the latent, so it weighs orch_scale**2 as
    #: much per dim in a distance (the decoder scales it back up).
    orch_dim: int = 16
    orch_scale: float = 0.25
    #: with order_dim > 0 the latent ends with an *order-aware* part: a linear map of the 4 bar
    #: features in order (the rest of the latent is a mean over bars, so it cannot tell a phrase
    #: from a bar-shifted repeat of it), scaled by order_scale like the orchestration part. Its
    #: weights start at zero, so a model fine-tuned from one without it starts where it was.
    order_dim: int = 0
    order_scale: float = 0.25
    #: "mix": mean of bar features + a linear map of their concatenation (order-aware);
    #: "mean": mean only (fully order-free latent; the decoder then cannot order the bars).
    pooling: str = "mean"
    #: weight of the NT-Xent consistency term (recon is summed over 80,640 cells, so this is
    #: on the scale of a few hundred nats); 0 turns augmentation off.
    contrast_weight: float = 1000.0
    temperature: float = 0.1
    #: weight of a song-level NT-Xent: two phrases of one song must find each other among the
    #: batch's songs (the trainer then builds batches of song pairs); 0: off. The phrase term
    #: then also meets the other phrase of its song as a hard negative.
    song_weight: float = 0.0
    #: the song term sees only the first ``song_dims`` latent dims (0: all), so the others stay
    #: free to tell apart the phrases of one song (near-repeats).
    song_dims: int = 0
    #: log-variance is bounded above so the posterior can never become as wide as the prior
    #: space between songs (original protocol).
    max_logvar: float = -10.0
    free_bits: float = 0.0
    #: bars decoded per phrase in the training loss (the rest are skipped; the estimate is
    #: scaled to all four bars, so it is unbiased): the decoder and the 80,640-cell likelihood
    #: are most of the cost, and one random bar per phrase gives the same gradient in expectation.
    recon_bars: int = 1
    output_bias: float = -4.0
    # augmentation of the consistency view (see midivae.data.augment.AugmentConfig)
    p_transpose: float = 0.3
    max_transpose: int = 5
    p_drop_notes: float = 0.5
    max_drop_rate: float = 0.3
    p_time_shift: float = 0.5
    max_time_shift: int = 8
    p_move_track: float = 0.5
    p_drop_track: float = 0.15
    p_octave: float = 0.15
    p_jitter: float = 0.15
    p_bar_roll: float = 0.5
    p_drum_change: float = 0.0

    @property
    def content_dim(self) -> int:
        """Latent dims before the orchestration and order parts."""
        return self.latent_dim - self.orch_dim - self.order_dim

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            p_transpose=self.p_transpose, max_transpose=self.max_transpose,
            p_drop_notes=self.p_drop_notes, max_drop_rate=self.max_drop_rate,
            p_time_shift=self.p_time_shift, max_time_shift=self.max_time_shift,
            p_move_track=self.p_move_track, p_drop_track=self.p_drop_track, p_octave=self.p_octave,
            p_jitter=self.p_jitter, p_bar_roll=self.p_bar_roll, p_drum_change=self.p_drum_change,
        )


class BarEncoder(nn.Module):
    """Bars ``(m, 16, 84, tracks)`` (time already max-pooled to sixteenths) -> ``(m, out_dim)``.

    Two paths, concatenated:

    * a patch MLP: non-overlapping 1-beat x 1-octave patches over all channels, each embedded by
      one matmul, the 28 patch embeddings flattened into one dense layer (pure matmuls: on a
      2-core CPU these run near peak where small-channel convolutions do not);
    * with ``linear_dim`` > 0, a linear map of the whole L2-normalised bar: a learnt version of
      the "bag of bars" vector, which already finds repeats offset by whole bars.

    With ``merge_pitched``, a sixth channel holds piano, guitar and strings merged: the same
    notes played by another of those instruments look the same there.
    """

    def __init__(
        self, c: RetrievalConfig, patch_dim: int | None = None, bar_dim: int | None = None, content_only: bool = False
    ) -> None:
        super().__init__()
        patch_dim = patch_dim or c.patch_dim
        bar_dim = bar_dim or c.bar_dim
        self.merge, self.content_only = c.merge_pitched and not content_only, content_only
        ch = 3 if content_only else N_TRACKS + int(self.merge)
        self.patch = nn.Linear(_PT * _PP * ch, patch_dim)
        self.fc = nn.Linear(_GT * _GP * patch_dim, bar_dim)
        self.linear = nn.Linear(_GT * _PT * N_PITCHES * ch, c.linear_dim) if c.linear_dim > 0 else None
        self.out_dim = bar_dim + (c.linear_dim if self.linear is not None else 0)

    def forward(self, pooled: Tensor) -> Tensor:
        """``pooled`` may be float or the 0/1 bytes: the patches are gathered (one copy, channel
        selection and patch order in the same pass) before the conversion to float."""
        m = pooled.shape[0]
        # (m, 16, 84, T) -> view (m, 4 beats, 7 octaves, 4 sixteenths, 12 pitches, T): no copy
        v = pooled.reshape(m, _GT, _PT, _GP, _PP, pooled.shape[-1]).transpose(2, 3)
        dtype = self.patch.weight.dtype
        if self.content_only:  # drums, bass, and piano/guitar/strings as one instrument
            parts = (v[..., DRUMS], v[..., BASS], _merged(v))
        elif self.merge:
            parts = (*v.unbind(-1), _merged(v))
        else:
            parts = None
        if parts is None:
            patches = torch.empty(v.shape, dtype=dtype, device=v.device).copy_(v)
        else:
            patches = torch.empty((*v.shape[:-1], len(parts)), dtype=dtype, device=v.device)
            for i, part in enumerate(parts):
                patches[..., i].copy_(part)
        h = F.gelu(self.patch(patches.reshape(m, _GT * _GP, -1)))
        h = F.gelu(self.fc(h.reshape(m, -1)))
        if self.linear is None:
            return h
        # the whole bar in its (time, pitch, channel) order, as the linear path was trained
        flat = patches.transpose(2, 3).reshape(m, -1)
        return torch.cat([h, self.linear(F.normalize(flat, dim=1))], dim=1)


def pool_bars(x: Tensor) -> Tensor:
    """Phrases ``(n, 4, 48, 84, tracks)`` -> bars ``(n * 4, 16, 84, tracks)`` max-pooled to
    sixteenths (any dtype: the 0/1 bytes stay bytes), what the bar encoders read."""
    n = x.shape[0]
    return x.reshape(n * BARS_PER_PHRASE, STEPS_PER_BAR // _POOL_T, _POOL_T, N_PITCHES, N_TRACKS).amax(dim=2)


def _merged(v: Tensor) -> Tensor:
    """Piano, guitar and strings merged into one channel (max), last axis dropped."""
    return torch.maximum(torch.maximum(v[..., PIANO], v[..., GUITAR]), v[..., STRINGS])


class BarDecoder(nn.Module):
    """Phrase latent + bar position -> logits ``(n, 4, 48, 84, tracks)``, one 6-step x
    1-octave x all-tracks patch per matmul row."""

    def __init__(self, c: RetrievalConfig) -> None:
        super().__init__()
        self.patch_dim = c.patch_dim
        self.from_z = nn.Linear(c.latent_dim, c.bar_dim)
        self.position = nn.Parameter(torch.zeros(BARS_PER_PHRASE, c.bar_dim))
        nn.init.normal_(self.position, std=0.5)
        self.fc = nn.Linear(c.bar_dim, _DGT * _GP * c.patch_dim)
        self.patch = nn.Linear(c.patch_dim, _DT * _PP * N_TRACKS)
        with torch.no_grad():
            self.patch.bias.fill_(c.output_bias)

    def forward(self, z: Tensor, bars: Tensor | None = None) -> Tensor:
        """All four bars ``(n, 4, 48, 84, tracks)``, or with ``bars`` (n, k) bar indices only
        those bars ``(n, k, 48, 84, tracks)``."""
        n = z.shape[0]
        pos = self.position.unsqueeze(0) if bars is None else self.position[bars]  # (1|n, k, bar_dim)
        h = self.from_z(z).unsqueeze(1) + pos
        k = h.shape[1]
        h = F.gelu(self.fc(F.gelu(h))).reshape(n * k, _DGT, _GP, self.patch_dim)
        out = self.patch(h).reshape(n * k, _DGT, _GP, _DT, _PP * N_TRACKS)
        return out.transpose(2, 3).reshape(n, k, *PHRASE_SHAPE[1:])


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """BCE with logits summed over cells, mean over the batch, as ``softplus(l) - x * l``:
    the same value as ``binary_cross_entropy_with_logits`` and ~25% cheaper on this CPU."""
    logits = logits.float()
    return (F.softplus(logits).sum() - (x.float() * logits).sum()) / x.shape[0]


def nt_xent(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE over the batch: row i of ``a`` must pick row i of ``b`` (cosine)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    z = torch.cat([a, b])
    sim = z @ z.T / temperature
    n = a.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n, device=sim.device), torch.arange(0, n, device=sim.device)])
    return F.cross_entropy(sim, target)


@register
class RetrievalVAE(PhraseVAE):
    name = "retrieval"
    Config = RetrievalConfig
    encodes_uint8 = True  # the time max-pool runs on the 0/1 bytes, then one float copy of a third

    def __init__(self, config: RetrievalConfig | None = None) -> None:
        super().__init__(config or RetrievalConfig())
        c = self.config
        if c.pooling not in ("mix", "mean"):
            raise ValueError(f"pooling must be 'mix' or 'mean', got {c.pooling!r}")
        if c.orch_dim < 0 or c.order_dim < 0 or c.orch_dim + c.order_dim >= c.latent_dim:
            raise ValueError("orch_dim and order_dim must be >= 0 and leave content dims in latent_dim")
        content = c.content_dim
        self.bar_encoder = BarEncoder(c, content_only=c.orch_dim > 0)
        feat = self.bar_encoder.out_dim
        self.to_stats = nn.Linear(feat, 2 * content)
        self.order = nn.Linear(BARS_PER_PHRASE * feat, 2 * content) if c.pooling == "mix" else None
        if c.orch_dim > 0:
            self.orch_encoder = BarEncoder(c, patch_dim=16, bar_dim=64)
            self.orch_stats = nn.Linear(BARS_PER_PHRASE * self.orch_encoder.out_dim, 2 * c.orch_dim)
        if c.order_dim > 0:
            self.order_stats = nn.Linear(BARS_PER_PHRASE * feat, 2 * c.order_dim)
            nn.init.zeros_(self.order_stats.weight)
            nn.init.zeros_(self.order_stats.bias)
        self.decoder = BarDecoder(c)
        self.wants_song_pairs = c.song_weight > 0
        self.wants_views = c.contrast_weight > 0

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._encode_pooled(pool_bars(x))

    @property
    def bar_part_dim(self) -> int:
        return BARS_PER_PHRASE * self.config.content_dim

    def encode_with_bars(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        pooled = pool_bars(x)
        h = self._bar_features(pooled)
        bars = self.to_stats(h)[..., : self.config.content_dim]  # to_stats is affine: bars average to mu
        return (*self._encode_pooled(pooled, h), bars)

    def _bar_features(self, pooled: Tensor) -> Tensor:
        return self.bar_encoder(pooled).reshape(pooled.shape[0] // BARS_PER_PHRASE, BARS_PER_PHRASE, -1)

    def _encode_pooled(self, pooled: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior from time-pooled bars ``(n * 4, 16, 84, tracks)``, float or 0/1 bytes
        (``h``: their bar features, where already computed)."""
        c = self.config
        n = pooled.shape[0] // BARS_PER_PHRASE
        h = self._bar_features(pooled) if h is None else h
        stats = self.to_stats(h.mean(dim=1))
        if self.order is not None:
            stats = stats + self.order(h.reshape(n, -1))
        mu, logvar = stats.chunk(2, dim=1)
        if c.orch_dim > 0:
            o = self.orch_encoder(pooled).reshape(n, -1)
            o_mu, o_logvar = self.orch_stats(o).chunk(2, dim=1)
            mu = torch.cat([mu, c.orch_scale * o_mu], dim=1)
            logvar = torch.cat([logvar, o_logvar + 2 * math.log(c.orch_scale)], dim=1)
        if c.order_dim > 0:
            r_mu, r_logvar = self.order_stats(h.reshape(n, -1)).chunk(2, dim=1)
            mu = torch.cat([mu, c.order_scale * r_mu], dim=1)
            logvar = torch.cat([logvar, r_logvar + 2 * math.log(c.order_scale)], dim=1)
        # soft upper bound on log-variance (keeps gradients, unlike a clamp)
        logvar = self.config.max_logvar - F.softplus(self.config.max_logvar - logvar)
        return mu, logvar

    def _unscale(self, z: Tensor) -> Tensor:
        c = self.config
        if c.orch_dim == 0 and c.order_dim == 0:
            return z
        k = c.content_dim
        o = k + c.orch_dim
        return torch.cat([z[:, :k], z[:, k:o] / c.orch_scale, z[:, o:] / c.order_scale], dim=1)

    def init_state_from(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weights of a model without (or with fewer) order dims, adapted: the order encoder keeps
        its zero start and the decoder gets zero columns for the new latent dims, so the adapted
        model encodes and decodes exactly as the one it came from."""
        own = self.state_dict()
        out = dict(state)
        for key, value in own.items():
            if key.startswith("order_stats.") and key not in state:
                out[key] = value
        key = "decoder.from_z.weight"
        if key in state and state[key].shape[1] < own[key].shape[1] and state[key].shape[0] == own[key].shape[0]:
            pad = torch.zeros(own[key].shape[0], own[key].shape[1] - state[key].shape[1], dtype=state[key].dtype)
            out[key] = torch.cat([state[key], pad.to(state[key].device)], dim=1)
        return out

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self._unscale(z))

    @staticmethod
    def _gen() -> np.random.Generator:
        # augmentation draws from its own generator, seeded from torch's global RNG (which the
        # trainer seeds), so a seeded run is repeatable
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def make_view(self, cells: Cells, rng: np.random.Generator) -> Tensor:
        """The batch altered by the config's augmentations, as 0/1 bytes time-pooled the way the
        encoder reads them, ``(n * 4, 16, 84, 5)`` on the CPU (a quarter of the float copy's
        bytes to move to a GPU)."""
        view = to_dense(random_cells(cells, rng, self.config.augment()), torch.uint8, time_pool=_POOL_T)
        return view.reshape(-1, *view.shape[2:])

    def loss(
        self, x: Tensor, beta: float, free_bits: float | None = None, song_pairs: bool = False,
        view: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``view``: :meth:`make_view` of ``x`` (the trainer builds it ahead); without it the view
        is drawn here from torch's global RNG (the batch copied to the CPU to build it)."""
        c = self.config
        fb = c.free_bits if free_bits is None else free_bits
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        k = c.recon_bars
        if k >= BARS_PER_PHRASE or not self.training:
            recon = bernoulli_nll(self.decode(z), x)
        else:
            bars = torch.argsort(torch.rand(x.shape[0], BARS_PER_PHRASE, device=x.device), dim=1)[:, :k]
            target = x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), bars]
            recon = bernoulli_nll(self.decoder(self._unscale(z), bars), target) * (BARS_PER_PHRASE / k)
        kl_dims = self.kl_per_dim(mu.float(), logvar.float()).mean(dim=0)
        kl = kl_dims.sum()
        penalised = torch.clamp(kl_dims, min=fb).sum() if fb > 0 else kl
        out = {"recon": recon, "kl": kl}
        total = recon + beta * penalised
        if c.contrast_weight > 0 and x.shape[0] > 1 and self.training:
            if view is None:
                view = self.make_view(to_cells(x.detach().cpu()), self._gen())
            mu_view, _ = self._encode_pooled(view.to(x.device, non_blocking=True))
            contrast = nt_xent(mu, mu_view, c.temperature)
            out["contrast"] = contrast
            total = total + c.contrast_weight * contrast
        if song_pairs and c.song_weight > 0 and x.shape[0] > 3 and self.training:
            h = x.shape[0] // 2
            part = mu[:, : c.song_dims] if c.song_dims > 0 else mu
            song = nt_xent(part[:h], part[h : 2 * h], c.temperature)
            out["song"] = song
            total = total + c.song_weight * song
        out["loss"] = total
        return out

    def flops_per_sample(self) -> int:
        """Forward FLOPs (2 per multiply-add) of encoder and decoder for one phrase (matmuls only)."""
        c = self.config
        macs = 0
        for module in self.modules():
            if isinstance(module, nn.Linear):
                rows = 1
                if module in (self.bar_encoder.patch, getattr(self, "orch_encoder", self.bar_encoder).patch):
                    rows = BARS_PER_PHRASE * _GT * _GP
                elif module is self.decoder.patch:
                    rows = BARS_PER_PHRASE * _DGT * _GP
                elif module in (self.bar_encoder.fc, self.bar_encoder.linear, self.decoder.fc,
                                getattr(self, "orch_encoder", self.bar_encoder).fc):
                    rows = BARS_PER_PHRASE
                macs += rows * module.in_features * module.out_features
        del c
        return 2 * macs
