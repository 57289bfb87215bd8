"""The reference architecture: shapes, the loss, the FLOP count, the registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from midivae.constants import PHRASE_SHAPE
from midivae.model import ARCHITECTURES, PhraseVAE, register
from midivae.model.reference import ReferenceConfig, ReferenceVAE


def sparse_batch(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *PHRASE_SHAPE, generator=g) < 0.02).float()


def test_shapes_and_loss_keys() -> None:
    torch.manual_seed(0)
    model = ReferenceVAE(ReferenceConfig(latent_dim=16))
    x = sparse_batch(3)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 16)
    logits = model.decode(mu)
    assert logits.shape == (3, *PHRASE_SHAPE)
    losses = model.loss(x, beta=0.5)
    assert {"loss", "recon", "kl"} <= set(losses)
    assert torch.allclose(losses["loss"], losses["recon"] + 0.5 * losses["kl"])
    # recon = BCE summed over cells, mean over the batch
    torch.manual_seed(1)
    z = model.reparameterize(mu, logvar)
    manual = torch.nn.functional.binary_cross_entropy_with_logits(model.decode(z), x, reduction="sum") / 3
    torch.manual_seed(1)
    assert torch.allclose(model.loss(x, 0.0)["recon"], manual, rtol=1e-5)


def test_other_kernel_sizes_give_the_input_shape_back() -> None:
    for kernel in (3, 4, 5):
        model = ReferenceVAE(ReferenceConfig(latent_dim=4, channels1=2, channels2=2, kernel=kernel))
        assert model.decode(torch.zeros(1, 4)).shape == (1, *PHRASE_SHAPE)


def test_channels_last_gives_the_same_result() -> None:
    torch.manual_seed(0)
    model = ReferenceVAE(ReferenceConfig(latent_dim=8, channels1=4, channels2=8)).eval()
    x = sparse_batch(2)
    mu, _ = model.encode(x)
    out = model.decode(mu)
    model = model.to(memory_format=torch.channels_last)
    mu2, _ = model.encode(x)
    assert torch.allclose(mu, mu2, atol=1e-4)
    assert torch.allclose(out, model.decode(mu2), atol=1e-4)


def test_free_bits_keep_the_reported_kl() -> None:
    torch.manual_seed(0)
    model = ReferenceVAE(ReferenceConfig(latent_dim=8, channels1=4, channels2=8))
    x = sparse_batch(2)
    torch.manual_seed(5)
    plain = model.loss(x, 1.0)
    torch.manual_seed(5)
    freed = model.loss(x, 1.0, free_bits=10.0)
    assert torch.allclose(plain["kl"], freed["kl"])
    assert freed["loss"] >= plain["loss"]  # every dim is raised to 10 nats


def test_flops_match_torch_counter() -> None:
    model = ReferenceVAE()
    x = sparse_batch(2)
    with FlopCounterMode(display=False) as counter:
        model.loss(x, 1.0)["loss"].backward()
    assert counter.get_total_flops() / 2 == model.train_flops_per_sample()
    assert 150e6 < model.train_flops_per_sample() < 200e6  # "about 190 MFLOP" per the issue


def test_registry() -> None:
    assert ARCHITECTURES["reference"] is ReferenceVAE
    with pytest.raises(TypeError):

        @register
        class NoConfig(PhraseVAE):  # noqa: F841
            name = "broken"

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        latent_dim: int = 2

    with pytest.raises(ValueError):

        @register
        class Clash(PhraseVAE):  # noqa: F841
            name = "reference"
            Config = Cfg
    assert ARCHITECTURES["reference"] is ReferenceVAE


def test_wrong_config_type_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Other:
        latent_dim: int = 2

    with pytest.raises(TypeError):
        ReferenceVAE(Other())  # type: ignore[arg-type]
