"""Retrieval VAE: contract shapes, loss terms, checkpoint round trip, and that training pulls an
altered phrase's latent towards its original."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from midivae.constants import PHRASE_SHAPE, PIANO, GUITAR
from midivae.data import augment as A
from midivae.model import ARCHITECTURES
from midivae.model.retrieval import RetrievalConfig, RetrievalVAE, nt_xent

#: small enough to train in seconds
TINY = RetrievalConfig(latent_dim=16, patch_dim=16, bar_dim=32, orch_dim=4)


def _phrases(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, *PHRASE_SHAPE)) < 0.01).float()


def test_registered_and_shapes() -> None:
    assert ARCHITECTURES["retrieval"] is RetrievalVAE
    model = RetrievalVAE(TINY).eval()
    x = _phrases(3)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, TINY.latent_dim)
    assert model.decode(mu).shape == (3, *PHRASE_SHAPE)
    assert bool((logvar <= TINY.max_logvar).all())
    assert model.flops_per_sample() > 0


def test_mean_pooling_is_bar_order_free() -> None:
    model = RetrievalVAE(dataclasses.replace(TINY, pooling="mean", orch_dim=0)).eval()
    x = _phrases(4, seed=1)
    with torch.no_grad():
        mu, _ = model.encode(x)
        mu_rolled, _ = model.encode(A.bar_roll(x, 1))
    torch.testing.assert_close(mu, mu_rolled, rtol=1e-5, atol=1e-5)


def test_orchestration_split_makes_content_instrument_free() -> None:
    """With orch_dim, moving piano notes to guitar leaves the content part of mu unchanged,
    and the orchestration part is scaled down by orch_scale."""
    cfg = dataclasses.replace(TINY, orch_dim=4, orch_scale=0.25, pooling="mix")
    model = RetrievalVAE(cfg).eval()
    x = _phrases(4, seed=3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        mu_moved, _ = model.encode(A.move_track(x, PIANO, GUITAR))
        assert model.decode(mu).shape == (4, *PHRASE_SHAPE)
    content = cfg.latent_dim - cfg.orch_dim
    torch.testing.assert_close(mu[:, :content], mu_moved[:, :content])
    assert not torch.allclose(mu[:, content:], mu_moved[:, content:])


def test_loss_terms_train_and_eval() -> None:
    model = RetrievalVAE(TINY)
    x = _phrases(8)
    torch.manual_seed(0)
    out = model.train().loss(x, beta=0.5)
    assert {"loss", "recon", "kl", "contrast"} <= set(out)
    assert all(torch.isfinite(v) for v in out.values())
    out_eval = model.eval().loss(x, beta=0.5)
    assert "contrast" not in out_eval  # validation: plain ELBO over all four bars
    torch.testing.assert_close(out_eval["loss"], out_eval["recon"] + 0.5 * out_eval["kl"])
    off = RetrievalVAE(dataclasses.replace(TINY, contrast_weight=0.0)).train().loss(x, beta=1.0)
    assert "contrast" not in off


def test_subsampled_recon_is_unbiased_scale() -> None:
    """One decoded bar, scaled by 4, estimates the full-phrase reconstruction loss."""
    model = RetrievalVAE(dataclasses.replace(TINY, contrast_weight=0.0, max_logvar=-20.0))
    x = _phrases(16, seed=2)
    full = model.eval().loss(x, beta=0.0)["recon"].item()
    torch.manual_seed(0)
    est = np.mean([model.train().loss(x, beta=0.0)["recon"].item() for _ in range(30)])
    assert abs(est - full) / full < 0.05


def test_nt_xent_prefers_matching_pairs() -> None:
    a = torch.randn(16, 8)
    assert nt_xent(a, a + 0.01 * torch.randn(16, 8), 0.1) < nt_xent(a, torch.randn(16, 8), 0.1)


def test_seeded_loss_is_deterministic() -> None:
    x = _phrases(6)
    values = []
    for _ in range(2):
        torch.manual_seed(0)
        model = RetrievalVAE(TINY).train()
        torch.manual_seed(1)
        values.append(model.loss(x, beta=0.1)["loss"].item())
    assert values[0] == values[1]


def test_checkpoint_round_trip(tmp_path) -> None:
    from midivae.model.checkpoint import load_checkpoint, save_checkpoint

    model = RetrievalVAE(TINY).eval()
    save_checkpoint(tmp_path / "ck", model)
    loaded = load_checkpoint(tmp_path / "ck")
    assert isinstance(loaded, RetrievalVAE) and loaded.config == TINY
    x = _phrases(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x)[0], model.encode(x)[0])
        torch.testing.assert_close(loaded.decode(torch.zeros(1, 16)), model.decode(torch.zeros(1, 16)))


def test_training_pulls_altered_phrases_together(data_dir) -> None:
    """Training with the instrument-move view: a moved phrase then finds its own original among
    real phrases more often than before training."""
    from midivae.io import read_lpd
    from midivae.song import cut_phrases

    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:8]
    x = torch.from_numpy(np.concatenate([cut_phrases(read_lpd(f)).phrases for f in files])[:128]).float()
    moved = A.move_track(x, PIANO, GUITAR)
    changed = torch.nonzero((moved != x).reshape(len(x), -1).any(dim=1)).squeeze(1)
    assert len(changed) >= 10
    cfg = dataclasses.replace(
        TINY, latent_dim=32, orch_dim=0, contrast_weight=200.0, p_transpose=0, p_octave=0, p_drop_track=0,
        p_drop_notes=0, p_jitter=0, p_time_shift=0, p_bar_roll=0, p_move_track=1.0,
    )
    torch.manual_seed(0)
    model = RetrievalVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), 3e-3)

    def hit_rate() -> float:
        model.eval()
        with torch.no_grad():
            a = torch.nn.functional.normalize(model.encode(x)[0], dim=1)
            b = torch.nn.functional.normalize(model.encode(moved[changed])[0], dim=1)
        return ((b @ a.T).argmax(dim=1) == changed).float().mean().item()

    before = hit_rate()
    for _ in range(40):
        model.train()
        batch = x[torch.randperm(len(x))[:64]]
        loss = model.loss(batch, beta=0.1)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = hit_rate()
    assert after > before + 0.1 or after > 0.9, (before, after)


def test_song_pair_term_only_with_song_batches() -> None:
    model = RetrievalVAE(dataclasses.replace(TINY, song_weight=10.0)).train()
    assert model.wants_song_pairs and not RetrievalVAE(TINY).wants_song_pairs
    x = _phrases(8)
    torch.manual_seed(0)
    paired = model.loss(x, beta=0.1, song_pairs=True)
    assert "song" in paired and torch.isfinite(paired["song"])
    torch.manual_seed(0)
    plain = model.loss(x, beta=0.1)
    assert "song" not in plain
    torch.testing.assert_close(paired["loss"], plain["loss"] + 10.0 * paired["song"])
    assert "song" not in model.eval().loss(x, beta=0.1, song_pairs=True)


def test_song_term_can_see_only_some_dims() -> None:
    x = _phrases(8)
    full = RetrievalVAE(dataclasses.replace(TINY, song_weight=1.0)).train()
    part = RetrievalVAE(dataclasses.replace(TINY, song_weight=1.0, song_dims=4)).train()
    part.load_state_dict(full.state_dict())
    torch.manual_seed(0)
    a = full.loss(x, beta=0.1, song_pairs=True)["song"]
    torch.manual_seed(0)
    b = part.loss(x, beta=0.1, song_pairs=True)["song"]
    mu, _ = part.encode(x)
    expected = nt_xent(mu[:4, :4], mu[4:, :4], TINY.temperature)
    torch.testing.assert_close(b, expected)
    assert not torch.isclose(a, b)


@pytest.mark.parametrize("changes", [{}, {"orch_dim": 0}, {"merge_pitched": True, "orch_dim": 0, "linear_dim": 8}, {"linear_dim": 8}])
def test_bar_encoder_patches_match_a_plain_gather(changes) -> None:
    """The encoder gathers patches straight from a strided view (bytes in, one float copy): it must
    see exactly the patches a plain reshape of float bars gives, for every channel layout."""
    import torch.nn.functional as F

    from midivae.constants import BASS, DRUMS, STRINGS
    from midivae.model import retrieval as R

    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, **changes)
    enc = R.BarEncoder(cfg, content_only=cfg.orch_dim > 0).eval()
    bars = (torch.rand(5, 16, 84, 5) < 0.05).to(torch.uint8)
    pooled = bars.float()
    merged = pooled[..., [PIANO, GUITAR, STRINGS]].amax(-1, keepdim=True)
    if enc.content_only:
        pooled = torch.cat([pooled[..., [DRUMS, BASS]], merged], -1)
    elif enc.merge:
        pooled = torch.cat([pooled, merged], -1)
    ch = pooled.shape[-1]
    patches = pooled.reshape(5, 4, 4, 7, 12 * ch).transpose(2, 3).reshape(5, 28, -1)
    with torch.no_grad():
        want = F.gelu(enc.fc(F.gelu(enc.patch(patches)).reshape(5, -1)))
        if enc.linear is not None:
            want = torch.cat([want, enc.linear(F.normalize(pooled.reshape(5, -1), dim=1))], 1)
        assert torch.allclose(enc(bars), want, atol=1e-6)
        assert torch.allclose(enc(bars.float()), want, atol=1e-6)


def test_order_dims_see_bar_order_and_start_from_the_model_without_them() -> None:
    torch.manual_seed(0)
    base = RetrievalVAE(TINY).eval()
    cfg = dataclasses.replace(TINY, latent_dim=TINY.latent_dim + 6, order_dim=6)
    model = RetrievalVAE(cfg).eval()
    model.load_state_dict(model.init_state_from(base.state_dict()))
    x = _phrases(4, seed=3)
    with torch.no_grad():
        mu, _ = model.encode(x)
        mu0, _ = base.encode(x)
        # adapted: the old latent, then order dims at zero; decoding ignores them
        assert torch.allclose(mu[:, : TINY.latent_dim], mu0) and torch.all(mu[:, TINY.latent_dim :] == 0)
        assert torch.allclose(model.decode(mu), base.decode(mu0), atol=1e-6)
        # once trained (here: random weights), only the order dims depend on the order of the bars
        torch.nn.init.normal_(model.order_stats.weight)
        rolled = torch.roll(x, shifts=1, dims=1)
        a, b = model.encode(x)[0], model.encode(rolled)[0]
    k = TINY.latent_dim
    assert torch.allclose(a[:, : k - TINY.orch_dim], b[:, : k - TINY.orch_dim], atol=1e-5)
    assert not torch.allclose(a[:, k:], b[:, k:], atol=1e-3)


def test_a_view_built_ahead_is_the_view_built_in_the_loss() -> None:
    """The trainer's views (from packed rows, 0/1 bytes) give the loss the view drawn inside it gives."""
    from midivae.data.augment import cells_from_packed
    from midivae.data.store import pack

    x = _phrases(6)
    torch.manual_seed(0)
    model = RetrievalVAE(TINY).train()
    model._gen = lambda: np.random.default_rng(9)  # the generator the loss draws its view from
    torch.manual_seed(1)
    inside = model.loss(x, beta=0.1)
    view = model.make_view(cells_from_packed(pack(x.bool().numpy())), np.random.default_rng(9))
    assert view.dtype == torch.uint8 and view.shape == (6 * 4, 16, 84, 5)
    torch.manual_seed(1)
    ahead = model.loss(x, beta=0.1, view=view)
    assert torch.equal(inside["contrast"], ahead["contrast"]) and torch.equal(inside["loss"], ahead["loss"])
    assert model.wants_views and not RetrievalVAE(dataclasses.replace(TINY, contrast_weight=0.0)).wants_views
