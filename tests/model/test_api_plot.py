"""read_phrases dispatch, the pretrained fallback, and the pianoroll picture."""

from __future__ import annotations

import numpy as np
import pytest

from midivae.errors import CheckpointError, InvalidInputError
from midivae.model import load_model, pretrained_path, read_phrases
from midivae.plot import plot_loss_curves, plot_pianoroll


def test_read_phrases_dispatch(tmp_path, data_dir) -> None:
    song = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[0]
    phrases = read_phrases(song)
    assert phrases.dtype == bool and phrases.shape[1:] == (4, 48, 84, 5) and len(phrases) > 0
    from midivae.io import write_midi

    write_midi(tmp_path / "song.mid", phrases)
    np.testing.assert_array_equal(read_phrases(tmp_path / "song.mid"), phrases)
    with pytest.raises(InvalidInputError):
        read_phrases(tmp_path / "notes.txt")


def test_load_model_without_a_shipped_model_says_so() -> None:
    if (pretrained_path() / "config.json").is_file():
        assert load_model().latent_dim > 0
    else:
        with pytest.raises(CheckpointError, match="pretrained"):
            load_model()


def test_plot_pianoroll_forms(tmp_path) -> None:
    phrases = np.zeros((2, 4, 48, 84, 5), dtype=bool)
    phrases[0, 0, :12, 40, 1] = True
    phrases[1, 2, 5, 10, 0] = True
    for name, arr in (("phrases", phrases), ("phrase", phrases[0]), ("roll", phrases.reshape(-1, 84, 5)),
                      ("probs", phrases.astype(np.float32) * 0.5)):
        path = plot_pianoroll(arr, tmp_path / f"{name}.png", title=name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_pianoroll(np.zeros((10, 12)), tmp_path / "bad.png")
    rows = [{"epoch": 1, "train_loss": 10.0, "val_loss": 9.0, "train_kl": 1.0, "val_f1": 0.2},
            {"epoch": 2, "train_loss": 8.0, "val_loss": 8.5, "train_kl": 2.0, "val_f1": 0.3}]
    assert plot_loss_curves(rows, tmp_path / "loss.png").is_file()
