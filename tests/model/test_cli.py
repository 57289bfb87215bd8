"""CLI smoke tests: train, resume, reconstruct, sample, and clear errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from midivae.cli import main

QUICK = ["--epochs", "1", "--batch-size", "16", "--val-size", "16", "--train-limit", "32",
         "--set", "channels1=4", "--set", "channels2=8", "--latent-dim", "8", "--quiet"]


def test_train_reconstruct_sample(tiny_store, tmp_path, data_dir) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", "--data", str(tiny_store), "--out", str(run), *QUICK, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["epochs_completed"] == 1 and summary["arch"] == "reference" and len(summary["checkpoint_id"]) == 16

    again = runner.invoke(main, ["train", "--data", str(tiny_store), "--out", str(run), *QUICK])
    assert again.exit_code == 1 and "--resume" in again.output

    resumed = runner.invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["epochs_completed"] == 2

    song = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[0]
    out_mid = tmp_path / "rec" / "song.mid"
    rec = runner.invoke(main, ["reconstruct", str(song), str(out_mid), "--checkpoint", str(run), "--json"])
    assert rec.exit_code == 0, rec.output
    assert out_mid.is_file() and out_mid.with_suffix(".png").is_file()
    assert 0 <= json.loads(rec.output)["cell_f1"] <= 1

    samples = tmp_path / "samples"
    res = runner.invoke(main, ["sample", "-n", "2", "--out", str(samples), "-c", str(run / "best"), "--sample", "-t", "0.7"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in samples.iterdir()) == ["sample_000.mid", "sample_000.png", "sample_001.mid", "sample_001.png"]

    from midivae.model import read_phrases

    assert read_phrases(samples / "sample_000.mid").shape[1:] == (4, 48, 84, 5)


def test_errors_are_one_line(tmp_path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--arch", "nope"])
    assert bad.exit_code != 0 and "unknown architecture" in bad.output
    bad_set = runner.invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "wings=2"])
    assert bad_set.exit_code != 0 and "no option 'wings'" in bad_set.output
    txt = tmp_path / "song.txt"
    txt.write_text("not music")
    missing = runner.invoke(main, ["reconstruct", str(txt), str(tmp_path / "o.mid"), "-c", str(tmp_path)])
    assert missing.exit_code == 1 and missing.output.startswith("midivae: error:")
    help_text = runner.invoke(main, ["train", "--help"]).output
    assert "--resume" in help_text and "--max-minutes" in help_text
    cold = runner.invoke(main, ["sample", "-n", "1", "--out", str(tmp_path / "s"), "-t", "0"])
    assert cold.exit_code == 2 and "--temperature" in cold.output


def test_train_init_from_keeps_the_architecture(tiny_store, tmp_path) -> None:
    runner = CliRunner()
    first = tmp_path / "first"
    assert runner.invoke(main, ["train", "--data", str(tiny_store), "--out", str(first), *QUICK]).exit_code == 0
    tuned = runner.invoke(main, ["train", "--data", str(tiny_store), "--out", str(tmp_path / "tuned"), "--init-from", str(first),
                                 "--epochs", "1", "--batch-size", "16", "--val-size", "16", "--train-limit", "32", "--quiet", "--json"])
    assert tuned.exit_code == 0, tuned.output
    assert json.loads(tuned.output)["arch"] == "reference"  # taken from the checkpoint, not the --arch default
    config = json.loads((tmp_path / "tuned" / "last" / "config.json").read_text())
    assert config["model_config"]["latent_dim"] == 8 and config["train_config"]["init_from"].endswith("best")
    both = runner.invoke(main, ["train", "--out", str(tmp_path / "tuned"), "--resume", "--init-from", str(first)])
    assert both.exit_code != 0
