"""The data commands as a user runs them: ingest, info, show, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from midivae.cli import main


def test_ingest_info_show(data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    songs = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:6]
    store = tmp_path / "store"
    args = ["ingest", *map(str, songs), str(data_dir / "midi" / "corrupted"), "--out", str(store), "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["files_read"] == 6 and summary["files_skipped"] == 3
    assert summary["phrases_written"] > 6

    result = runner.invoke(main, ["info", str(store), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["phrases"] == summary["phrases_written"] and info["songs"] == 6
    assert sum(info["split_phrases"].values()) == info["phrases"]
    assert info["songs_with_tempo"] == 6 and 20 < info["median_tempo"] < 400

    text = runner.invoke(main, ["info", str(store)])
    assert "Drums" in text.output and "train" in text.output

    png = tmp_path / "song.png"
    result = runner.invoke(main, ["show", str(songs[0]), "--phrase", "0", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(main, ["show", str(store), "--row", "0", "--out", str(tmp_path / "row.png")])
    assert result.exit_code == 0, result.output


def test_domain_errors_are_one_line_without_traceback(data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["show", str(data_dir / "midi" / "corrupted" / "not_midi.mid")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("midivae: error:") and "not_midi.mid" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["info", str(tmp_path)])
    assert result.exit_code == 1 and "not a phrase store" in result.output
    empty = tmp_path / "no_music"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a song")
    result = runner.invoke(main, ["ingest", str(empty), "--out", str(tmp_path / "store")])
    assert result.exit_code == 1 and "no MIDI" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "store").exists()  # nothing written for a source with nothing in it
