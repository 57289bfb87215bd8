"""Training: exact resume, determinism, early stopping and time budget, overfitting real phrases."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from midivae.constants import PHRASE_SHAPE
from midivae.errors import CheckpointError
from midivae.model import load_checkpoint, load_model
from midivae.model.metrics import ThresholdHistogram, prf, quantise
from midivae.model.reference import ReferenceVAE
from midivae.model.train import train

TIMING = {"elapsed_s", "train_samples_per_s"}


def _rows(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _same_weights(a, b) -> bool:
    sa, sb = load_checkpoint(a).state_dict(), load_checkpoint(b).state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_continues_the_same_run(tiny_store, tmp_path, tiny, quick_config) -> None:
    full = train(tiny_store, tmp_path / "full", model_config=tiny, train_config=quick_config(epochs=2), progress=False)
    assert full.epochs_completed == 2 and full.stopped == "epochs"
    train(tiny_store, tmp_path / "split", model_config=tiny, train_config=quick_config(epochs=1), progress=False)
    with pytest.raises(CheckpointError, match="resume"):  # a second start without --resume is refused
        train(tiny_store, tmp_path / "split", model_config=tiny, train_config=quick_config(epochs=1), progress=False)
    with pytest.raises(CheckpointError, match="lr"):  # changing what shapes the run is refused
        train(tiny_store, tmp_path / "split", train_config=quick_config(epochs=2, lr=1e-2), resume=True, progress=False)
    resumed = train(None, tmp_path / "split", train_config=quick_config(epochs=2), resume=True, progress=False)
    assert resumed.epochs_completed == 2
    assert _same_weights(tmp_path / "full" / "last", tmp_path / "split" / "last")
    assert _rows(tmp_path / "full") == _rows(tmp_path / "split")
    # resuming a finished run does nothing more
    again = train(None, tmp_path / "split", resume=True, progress=False)
    assert again.epochs_completed == 2 and len(_rows(tmp_path / "split")) == 2


def test_time_budget_stops_mid_epoch_and_resume_matches(tiny_store, tmp_path, tiny, quick_config) -> None:
    cfg = quick_config(epochs=1, train_limit=64)
    train(tiny_store, tmp_path / "full", model_config=tiny, train_config=cfg, progress=False)
    cut = train(tiny_store, tmp_path / "cut", model_config=tiny, train_config=quick_config(epochs=1, train_limit=64, max_minutes=1e-6), progress=False)
    assert cut.stopped == "time budget" and cut.epochs_completed == 0
    state = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert state["next_batch"] == 1  # one step, then the budget was spent
    done = train(None, tmp_path / "cut", train_config=cfg, resume=True, progress=False)
    assert done.epochs_completed == 1
    assert _same_weights(tmp_path / "full" / "last", tmp_path / "cut" / "last")


def test_metrics_files_and_checkpoints(tiny_store, tmp_path, tiny, quick_config) -> None:
    result = train(tiny_store, tmp_path / "run", model_config=tiny, train_config=quick_config(epochs=2), progress=False)
    run = tmp_path / "run"
    for name in ("metrics.csv", "metrics.jsonl", "loss_curve.png", "best/weights.safetensors", "last/optimizer.safetensors"):
        assert (run / name).is_file(), name
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "val_cell_f1",
                "val_onset_f1", "val_onset_piano_f1", "val_active_units", "train_samples_per_s"):
        assert key in row, key
    assert 0 <= row["val_active_units"] <= tiny.latent_dim
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    model = load_model(run)  # a run folder loads its best checkpoint
    assert model.checkpoint_id == result.checkpoint_id
    assert model.thresholds.shape == (5,) and ((model.thresholds > 0) & (model.thresholds < 1)).all()


def test_early_stopping(tiny_store, tmp_path, tiny, quick_config) -> None:
    # lr so small that the validation loss cannot improve after the first epoch by chance alone
    cfg = quick_config(epochs=6, lr=1e-12, patience=1, train_limit=16)
    result = train(tiny_store, tmp_path / "run", model_config=tiny, train_config=cfg, progress=False)
    assert result.stopped == "early stopping" and result.epochs_completed < 6


def test_same_seed_same_run(tiny_store, tmp_path, tiny, quick_config) -> None:
    cfg = quick_config(epochs=1, train_limit=32)
    a = train(tiny_store, tmp_path / "a", model_config=tiny, train_config=cfg, progress=False)
    b = train(tiny_store, tmp_path / "b", model_config=tiny, train_config=cfg, progress=False)
    assert a.checkpoint_id == b.checkpoint_id
    c = train(tiny_store, tmp_path / "c", model_config=tiny, train_config=quick_config(epochs=1, train_limit=32, seed=4), progress=False)
    assert c.checkpoint_id != a.checkpoint_id


def _f1(model: ReferenceVAE, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model.decode(model.encode(x)[0]))
    model.train()
    hist = ThresholdHistogram()
    hist.update(quantise(probs), x.to(torch.uint8))
    return prf(*hist.best()[1].sum(axis=0)).f1


def test_tiny_model_overfits_real_phrases(real_phrases, tiny) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x = torch.from_numpy(real_phrases[:4].view(np.uint8)).float()
    model = ReferenceVAE(tiny)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    start = _f1(model, x)
    for _ in range(100):
        optimizer.zero_grad()
        model.loss(x, beta=0.01)["loss"].backward()
        optimizer.step()
    end = _f1(model, x)
    assert start < 0.1
    assert end > 0.5 and end > 5 * start, (start, end)


def test_song_partners_are_other_phrases_of_the_same_song() -> None:
    from midivae.model.train import Splits

    songs = np.array([0, 0, 1, 2, 2, 2, 0, 3], dtype=np.int64)  # song 1 and 3: one phrase each
    splits = Splits(train=np.zeros((8, 1), np.uint8), val=np.zeros((0, 1), np.uint8), val_source="", store="", train_song=songs)
    rng = np.random.default_rng(0)
    rows = np.arange(8)
    seen: set[tuple[int, int]] = set()
    for _ in range(50):
        partners = splits.song_partners(rows, rng)
        assert np.array_equal(songs[partners], songs)
        lonely = np.isin(songs, [1, 3])
        assert np.array_equal(partners[lonely], rows[lonely])  # a one-phrase song pairs with itself
        assert np.all(partners[~lonely] != rows[~lonely])
        seen.update(zip(rows.tolist(), partners.tolist()))
    assert {(0, 1), (0, 6), (3, 4), (3, 5)} <= seen  # every other phrase of the song is drawn


def test_song_pair_training_and_init_from(tiny_store, tmp_path, quick_config) -> None:
    from midivae.model.retrieval import RetrievalConfig

    small = RetrievalConfig(latent_dim=16, patch_dim=16, bar_dim=32, orch_dim=4)
    first = train(tiny_store, tmp_path / "a", arch="retrieval", model_config=small, train_config=quick_config(epochs=1), progress=False)
    # a new run from the first one's weights, with the song-pair term switched on
    paired = dataclasses.replace(small, song_weight=5.0)
    cfg = quick_config(epochs=1, init_from=str(first.best_dir))
    second = train(tiny_store, tmp_path / "b", arch="retrieval", model_config=paired, train_config=cfg, progress=False)
    assert "train_song" in second.last_metrics and np.isfinite(second.last_metrics["train_song"])
    # every run's best/ gets a search head fitted on its training phrases
    model = load_model(first.best_dir)
    assert (first.best_dir / "search.safetensors").is_file() and model.search_id
    head = model.search_head
    # the bar part as shipped; a 16-dim latent is no longer than the coarse part: one-stage search,
    # so no fingerprints either (they re-rank a shortlist)
    assert (head.bar_weight, head.coarse_dims, head.shortlist, head.fingerprint_hashes) == (0.3, 0, 0, 0)
    assert np.allclose(head.basis @ head.basis.T, np.eye(16), atol=1e-4)
    phrases = np.zeros((3, *PHRASE_SHAPE), dtype=bool)
    phrases[:, :, ::12, 30:40, 1] = True
    assert model.encode_search(phrases).shape == (3, model.search_dim) == (3, 16 + 4 * small.content_dim)
    info = load_checkpoint(second.best_dir).train_config
    assert info.init_from == str(first.best_dir) and info.init_checkpoint_id == first.checkpoint_id
    # zero epochs of training would leave the weights as they were: check the start is the first run's
    start = train(tiny_store, tmp_path / "c", arch="retrieval", model_config=small,
                  train_config=quick_config(epochs=1, init_from=str(first.best_dir), lr=1e-12), progress=False)
    sa, sb = load_checkpoint(first.best_dir).state_dict(), load_checkpoint(start.last_dir).state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    with pytest.raises(CheckpointError, match="reference"):
        train(tiny_store, tmp_path / "d", arch="reference", train_config=cfg, progress=False)


def test_loader_threads_do_not_change_the_run(tiny_store, tmp_path, quick_config) -> None:
    """Batches and their augmented views built ahead on host threads (as beside a GPU) train the
    very same weights as batches built in the training loop."""
    from midivae.model.retrieval import RetrievalConfig

    paired = RetrievalConfig(latent_dim=16, patch_dim=16, bar_dim=32, orch_dim=4, song_weight=5.0)
    runs = {}
    for threads in (0, 2):
        cfg = quick_config(epochs=2, loader_threads=threads)
        runs[threads] = train(tiny_store, tmp_path / f"t{threads}", arch="retrieval", model_config=paired, train_config=cfg, progress=False)
    assert _same_weights(tmp_path / "t0" / "last", tmp_path / "t2" / "last")
    assert _rows(tmp_path / "t0") == _rows(tmp_path / "t2")
    assert runs[2].last_metrics["train_contrast"] > 0 and np.isfinite(runs[2].last_metrics["train_song"])
    # cut short by a time budget with batches still being built ahead, then resumed: the same run
    cut = train(tiny_store, tmp_path / "cut", arch="retrieval", model_config=paired,
                train_config=quick_config(epochs=2, loader_threads=2, max_minutes=1e-6), progress=False)
    assert cut.stopped == "time budget"
    train(None, tmp_path / "cut", train_config=quick_config(epochs=2, loader_threads=1), resume=True, progress=False)
    assert _same_weights(tmp_path / "t0" / "last", tmp_path / "cut" / "last")


def test_a_non_finite_loss_stops_the_run_naming_its_batch(tiny_store, tmp_path, tiny, quick_config, monkeypatch) -> None:
    """Losses are read from the device every few steps, yet a NaN still names its batch and no
    checkpoint is written with the weights it spoilt."""
    real, calls = ReferenceVAE.loss, []

    def loss(self, x, beta, **kwargs):
        out = real(self, x, beta, **kwargs)
        calls.append(1)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) == 2 else out

    monkeypatch.setattr(ReferenceVAE, "loss", loss)
    with pytest.raises(FloatingPointError, match=r"nan at epoch 1, batch 1\b"):
        train(tiny_store, tmp_path / "nan", model_config=tiny, train_config=quick_config(epochs=1), progress=False)
    assert len(calls) == 3  # the batch after it ran before the read (48 phrases, batches of 16)
    assert not (tmp_path / "nan" / "last").exists() and not (tmp_path / "nan" / "best").exists()


def test_unpacked_rows_are_the_phrases_in_any_dtype() -> None:
    from midivae.data.store import pack
    from midivae.model.train import unpack_rows

    x = np.random.default_rng(2).random((5, *PHRASE_SHAPE)) < 0.05
    packed = pack(x)
    for dtype in (torch.uint8, torch.float32):
        for rows in (packed, torch.from_numpy(packed)):
            got = unpack_rows(rows, torch.device("cpu"), dtype)
            assert got.dtype == dtype and torch.equal(got.bool(), torch.from_numpy(x))
    assert torch.equal(unpack_rows(packed, torch.device("cpu")), torch.from_numpy(x).float())  # float32 by default
