"""Checkpoints: save -> load gives identical outputs, ids, thresholds; failures leave the old one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from midivae.errors import CheckpointError
from midivae.model import checkpoint as ckpt
from midivae.model import load_checkpoint, load_model, save_checkpoint
from midivae.model.config import TrainConfig, config_from_dict, with_overrides
from midivae.model.reference import ReferenceConfig, ReferenceVAE

TINY = ReferenceConfig(latent_dim=8, channels1=4, channels2=8)


def _model(seed: int = 0) -> ReferenceVAE:
    torch.manual_seed(seed)
    return ReferenceVAE(TINY)


def test_save_load_gives_identical_outputs(tmp_path, real_phrases) -> None:
    model = _model().eval()
    cid = save_checkpoint(tmp_path / "ck", model, TrainConfig(epochs=3), epoch=3, thresholds=[0.1, 0.2, 0.3, 0.4, 0.5])
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.checkpoint_id == cid == ckpt.checkpoint_id(tmp_path / "ck")
    assert loaded.config == model.config and not loaded.training
    assert loaded.train_config == TrainConfig(epochs=3)
    np.testing.assert_allclose(loaded.thresholds, [0.1, 0.2, 0.3, 0.4, 0.5])
    x = torch.from_numpy(real_phrases[:4]).float()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        mu2, logvar2 = loaded.encode(x)
        assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
        assert torch.equal(model.decode(mu), loaded.decode(mu2))
    # the numpy API on the same checkpoint
    api = load_model(tmp_path / "ck")
    mu3, _ = api.encode(real_phrases[:4])
    assert mu3.dtype == np.float32 and np.array_equal(mu3, mu.numpy())
    probs = api.decode(mu3)
    assert probs.shape == real_phrases[:4].shape and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    assert api.threshold(probs).dtype == bool
    assert api.sample(2, temperature=0.5, seed=1).shape == (2, *real_phrases.shape[1:])
    np.testing.assert_array_equal(api.sample(2, seed=1), api.sample(2, seed=1))
    # no pickle anywhere: every file is JSON or safetensors
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {"config.json", "weights.safetensors", "thresholds.json"}


def test_channels_last_weights_load_into_a_fresh_model(tmp_path) -> None:
    model = _model().to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path / "ck", model)
    loaded = load_checkpoint(tmp_path / "ck")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_id_changes_with_weights_and_float16_shipping(tmp_path) -> None:
    a = save_checkpoint(tmp_path / "a", _model(0))
    b = save_checkpoint(tmp_path / "b", _model(1))
    assert a != b and len(a) == ckpt.ID_LENGTH
    half = save_checkpoint(tmp_path / "h", _model(0), weights_dtype=torch.float16)
    size = lambda p: (p / ckpt.WEIGHTS_FILE).stat().st_size  # noqa: E731
    assert size(tmp_path / "h") < 0.6 * size(tmp_path / "a")
    loaded = load_checkpoint(tmp_path / "h")
    assert loaded.checkpoint_id == half
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    first = save_checkpoint(tmp_path / "ck", _model(0))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_write_json", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", _model(1))
    assert load_checkpoint(tmp_path / "ck").checkpoint_id == first
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary folder left behind


def test_overwrite_swaps_the_directory(tmp_path) -> None:
    save_checkpoint(tmp_path / "ck", _model(0), thresholds=[0.5] * 5)
    second = save_checkpoint(tmp_path / "ck", _model(1))
    assert load_checkpoint(tmp_path / "ck").checkpoint_id == second
    assert not (tmp_path / "ck" / "thresholds.json").exists()  # nothing stale from the old one


def test_bad_checkpoints_raise_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a midivae checkpoint"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "weights.safetensors").write_bytes(b"x")  # the weights file named instead of its folder
    with pytest.raises(CheckpointError, match="weights.safetensors: a file; a checkpoint is a directory"):
        load_checkpoint(tmp_path / "weights.safetensors")
    save_checkpoint(tmp_path / "ck", _model())
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["arch"] = "no-such-arch"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(tmp_path / "ck")
    cfg["arch"] = "reference"
    cfg["model_config"]["latent_dim"] = 9  # weights no longer fit
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "ck")
    (tmp_path / "ck" / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ck")


def test_config_round_trip_and_overrides() -> None:
    cfg = with_overrides(ReferenceConfig(), {"latent_dim": "64", "output_bias": "-3.5"})
    assert cfg.latent_dim == 64 and cfg.output_bias == -3.5
    train = with_overrides(TrainConfig(), {"max_minutes": "none", "channels_last": "false", "grad_clip": "1"})
    assert train.max_minutes is None and train.channels_last is False and train.grad_clip == 1.0
    assert config_from_dict(TrainConfig, json.loads(json.dumps(train.__dict__))) == train
    with pytest.raises(ValueError, match="no option"):
        with_overrides(ReferenceConfig(), {"nope": "1"})
    with pytest.raises(CheckpointError):
        config_from_dict(ReferenceConfig, {"latent_dim": 4, "unknown": 1})
