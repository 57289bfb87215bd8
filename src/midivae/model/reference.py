"""The reference VAE, faithful to the original design; kept by name as the baseline row.

Encoder: two strided convolutions and one dense layer giving the mean and log-variance.
Decoder: a dense layer sized to the last convolution's output, then two transposed convolutions
back to the input's shape (logits). Loss: Bernoulli BCE + beta * KL (the base class default).

The phrase ``(n, 4, 48, 84, 5)`` is seen as an image of 192 time steps x 84 pitches with the
5 tracks as channels. That view, ``(n, 5, 192, 84)``, is a free reshape + permute of the stored
layout and is *already* channels-last in memory; the dense layers read and write the
convolutions' activations in (row, column, channel) order, so with channels-last weights no
layout copy is made anywhere between input and logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from midivae.constants import N_PITCHES, N_TRACKS, PHRASE_SHAPE, STEPS_PER_PHRASE
from midivae.model.base import PhraseVAE, register


@dataclass(frozen=True)
class ReferenceConfig:
    """Hyper-parameters of the reference VAE.

    The defaults (3x3 kernels, stride 2, 16 and 32 channels, 128 latent dims) cost about
    160 MFLOP per training sample (forward + backward), most of it in the two dense layers.
    128 dims: the size of the original work's latent, small enough for a cheap index (512 bytes
    per phrase in float32), large enough to reconstruct 4-bar, 5-track phrases.
    """

    latent_dim: int = 128
    channels1: int = 16
    channels2: int = 32
    kernel: int = 3
    #: initial bias of the output logits: log(p / (1 - p)) for the ~2% of cells that are on,
    #: so training does not spend its first steps learning that the roll is mostly empty.
    output_bias: float = -4.0


def _conv_out(size: int, kernel: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // 2 + 1


@register
class ReferenceVAE(PhraseVAE):
    name = "reference"
    Config = ReferenceConfig

    def __init__(self, config: ReferenceConfig | None = None) -> None:
        super().__init__(config or ReferenceConfig())
        c = self.config
        k, pad = c.kernel, c.kernel // 2
        self.h1, self.w1 = _conv_out(STEPS_PER_PHRASE, k), _conv_out(N_PITCHES, k)
        self.h2, self.w2 = _conv_out(self.h1, k), _conv_out(self.w1, k)
        flat = c.channels2 * self.h2 * self.w2
        self.conv1 = nn.Conv2d(N_TRACKS, c.channels1, k, stride=2, padding=pad)
        self.conv2 = nn.Conv2d(c.channels1, c.channels2, k, stride=2, padding=pad)
        self.to_stats = nn.Linear(flat, 2 * c.latent_dim)  # mean and log-variance, one matmul
        self.from_z = nn.Linear(c.latent_dim, flat)
        # output_padding makes each transposed conv invert its conv's size exactly.
        self.deconv1 = nn.ConvTranspose2d(
            c.channels2, c.channels1, k, stride=2, padding=pad,
            output_padding=(self._op(self.h1, self.h2, k, pad), self._op(self.w1, self.w2, k, pad)),
        )
        self.deconv2 = nn.ConvTranspose2d(
            c.channels1, N_TRACKS, k, stride=2, padding=pad,
            output_padding=(self._op(STEPS_PER_PHRASE, self.h1, k, pad), self._op(N_PITCHES, self.w1, k, pad)),
        )
        self.act = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.deconv2.bias.fill_(c.output_bias)

    @staticmethod
    def _op(target: int, size: int, k: int, pad: int) -> int:
        """The output_padding that makes a stride-2 transposed conv map ``size`` back to ``target``."""
        return target - ((size - 1) * 2 - 2 * pad + k)

    def _features(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        img = x.reshape(n, STEPS_PER_PHRASE, N_PITCHES, N_TRACKS).permute(0, 3, 1, 2)
        h = self.act(self.conv1(img))
        h = self.act(self.conv2(h))
        # flatten in (row, column, channel) order, as Keras' Flatten does on channels-last
        # tensors: free for the channels-last activations the trainer and the API use.
        return h.permute(0, 2, 3, 1).reshape(n, -1)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.to_stats(self._features(x)).chunk(2, dim=1)
        return mu, logvar

    def encode_mean(self, x: Tensor) -> Tensor:
        """Only the mean's half of the dense layer: a quarter less work per encoded phrase."""
        d = self.config.latent_dim
        return F.linear(self._features(x), self.to_stats.weight[:d], self.to_stats.bias[:d])

    def decode(self, z: Tensor) -> Tensor:
        n = z.shape[0]
        c = self.config
        h = self.act(self.from_z(z)).view(n, self.h2, self.w2, c.channels2).permute(0, 3, 1, 2)
        h = self.act(self.deconv1(h))
        logits = self.deconv2(h)  # (n, tracks, steps, pitches)
        return logits.permute(0, 2, 3, 1).reshape(n, *PHRASE_SHAPE)

    def flops_per_sample(self) -> int:
        """Forward FLOPs (2 per multiply-add) of the convolutions and dense layers."""
        c, k2 = self.config, self.config.kernel**2
        conv1 = self.h1 * self.w1 * c.channels1 * N_TRACKS * k2
        conv2 = self.h2 * self.w2 * c.channels2 * c.channels1 * k2
        flat = c.channels2 * self.h2 * self.w2
        dense = flat * 2 * c.latent_dim + c.latent_dim * flat
        return 2 * (2 * (conv1 + conv2) + dense)

    def train_flops_per_sample(self) -> int:
        """Forward + backward: 3x forward, less the input gradient of the first conv (not needed)."""
        c, k2 = self.config, self.config.kernel**2
        conv1 = 2 * self.h1 * self.w1 * c.channels1 * N_TRACKS * k2
        return 3 * self.flops_per_sample() - conv1
