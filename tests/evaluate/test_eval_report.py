"""The whole evaluation renders its report from a real run on a few shared LPD songs."""

import json
from pathlib import Path

from click.testing import CliRunner

from midivae.evaluate.run import EvalConfig, run_evaluation


def test_report_from_a_small_real_run(lpd_dir, tmp_path):
    out = tmp_path / "report"
    cfg = EvalConfig(data=lpd_dir, out=out, use_model=False, max_songs=10, max_fit_songs=4,
                     robustness_queries=40, any_key_queries=10, versioned_songs=4, latent_dim=8,
                     protocol_songs=10, command="midivae evaluate (test)",
                     report_path=tmp_path / "docs" / "evaluation.md")
    m = run_evaluation(cfg)
    text = (out / "report.md").read_text()
    for heading in ("## Summary", "## 1. Original protocol", "## 2. Excerpt retrieval", "## 3. Robustness",
                    "## 6. Version identification", "## 7. Cost", "## 8. Pictures", "## Run time"):
        assert heading in text
    for png in ("genre_map.png", "queries.png", "excerpt.png"):
        assert (out / png).stat().st_size > 1000
    assert "**What the phrase-level misses found instead**" in text  # the random floor misses
    doc = (tmp_path / "docs" / "evaluation.md").read_text()
    assert "](../report/genre_map.png)" in doc and "](genre_map.png)" in text
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["methods"]) == {"raw", "raw_cosine", "chroma", "pca", "bag_of_bars", "bag_of_bars_pca", "random"}
    assert saved["data"]["n_songs"] == 10
    # where the time went: encoding and every task, per method, adding up to the method's total
    steps = saved["methods"]["chroma"]["task_seconds"]
    assert list(steps) == ["encoding", "protocol", "excerpt", "robustness", "genre", "cost", "versions"]  # versions last: see run.py
    assert 0 < sum(steps.values()) <= saved["methods"]["chroma"]["seconds"]
    # the random floor stays low; raw pianorolls find excerpts of their own song more often
    ex = {k: v["excerpt"]["hit@1"] for k, v in m["methods"].items()}
    assert ex["random"] < ex["raw_cosine"]


def _evaluate_baselines(lpd_dir, out, tasks: str, baselines: str, *extra: str):
    """``midivae evaluate`` without the model on 6 shared songs; the CLI's result."""
    from midivae.cli import main

    res = CliRunner().invoke(main, ["evaluate", "--data", str(lpd_dir), "--out", str(out), "--no-model",
                                    "--tasks", tasks, "--baselines", baselines, "--max-songs", "6",
                                    "--max-fit-songs", "2", *extra])
    assert res.exit_code == 0, res.output
    return res


def test_cli_runs_selected_tasks(lpd_dir, tmp_path):
    out = tmp_path / "r"
    _evaluate_baselines(lpd_dir, out, "excerpt,cost", "chroma,random", "--quiet", "--threads", "2")
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["methods"]) == {"chroma", "random"} and saved["config"]["threads"] == 2
    assert "excerpt" in saved["methods"]["chroma"] and "robustness" not in saved["methods"]["chroma"]


def test_cli_excerpt_queries_caps_the_excerpt_task(lpd_dir, tmp_path):
    out = tmp_path / "r"
    _evaluate_baselines(lpd_dir, out, "excerpt", "chroma,random", "--quiet", "--excerpt-queries", "10")
    saved = json.loads((out / "metrics.json").read_text())
    for method in ("chroma", "random"):
        e = saved["methods"][method]["excerpt"]
        assert e["n_queries"] == 10 < e["n_query_phrases"] and saved["config"]["excerpt_queries"] == 10
    assert "10 queries (a seeded sample of the" in (out / "report.md").read_text()
    _evaluate_baselines(lpd_dir, out, "excerpt", "chroma", "--quiet", "--excerpt-queries", "0")  # 0: all of them
    e = json.loads((out / "metrics.json").read_text())["methods"]["chroma"]["excerpt"]
    assert e["n_queries"] == e["n_query_phrases"] > 10


def test_cli_rejects_unknown_task(lpd_dir, tmp_path):
    from midivae.cli import main

    res = CliRunner().invoke(main, ["evaluate", "--data", str(lpd_dir), "--out", str(tmp_path), "--tasks", "nope"])
    assert res.exit_code != 0 and "unknown" in res.output
    res = CliRunner().invoke(main, ["evaluate", "--data", str(lpd_dir), "--out", str(tmp_path), "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output


def test_cli_json_prints_paths_and_targets(lpd_dir, tmp_path):
    got = json.loads(_evaluate_baselines(lpd_dir, tmp_path / "r", "excerpt", "chroma", "--json").output)
    assert got["methods"] == ["chroma"] and Path(got["metrics"]).is_file() and Path(got["report"]).is_file()
    assert got["targets"] == []  # no model row: no target to check


def test_cli_versions_dir_alone_reads_its_csv(lpd_dir, mixed_version_folder, tmp_path):
    """``--versions-dir`` without ``--versions-csv`` reads the folder's versions.csv (real
    versions, not generated ones); the report names the folder and the skipped file."""
    out = tmp_path / "r"
    _evaluate_baselines(lpd_dir, out, "versions", "raw_cosine", "--quiet", "--versions-dir", str(mixed_version_folder))
    saved = json.loads((out / "metrics.json").read_text())
    v = saved["methods"]["raw_cosine"]["versions"]
    assert v["n_files"] == 12 and v["n_queries"] == 8 and v["hit@1"] == 1.0
    assert str(mixed_version_folder) in saved["versions"]["source"] and "1 file skipped" in saved["versions"]["source"]


def test_cli_refuses_bad_counts_and_a_single_file(lpd_dir, tmp_path):
    from midivae.cli import main

    base = ["evaluate", "--data", str(lpd_dir), "--out", str(tmp_path), "--no-model"]
    for option, value in (("--max-songs", "-3"), ("--robustness-queries", "0"), ("--max-fit-songs", "0")):
        res = CliRunner().invoke(main, [*base, option, value])
        assert res.exit_code == 2 and option in res.output
    one_file = next(lpd_dir.rglob("*.npz"))
    res = CliRunner().invoke(main, ["evaluate", "--data", str(one_file), "--out", str(tmp_path)])
    assert res.exit_code == 1 and "folder of .npz or MIDI files" in res.output and "Traceback" not in res.output


def test_targets_read_the_model_row_and_carry_the_intervals():
    """check_targets on a hand-made metrics dict: thresholds, 'above every baseline', and the
    bootstrap intervals / shuffled-label bands in the notes."""
    from midivae.evaluate.report import check_targets

    rob = {"drop_20pct_notes/phrase_hit1": 0.96, "drop_20pct_notes/phrase_hit1_lo95": 0.94,
           "drop_20pct_notes/phrase_hit1_hi95": 0.97, "drop_20pct_notes/song_hit1": 0.99,
           "transpose_up_2/song_hit1": 0.90, "transpose_up_2/song_hit1_anykey": 0.97,
           "transpose_up_2/song_hit1_anykey_lo95": 0.96, "transpose_up_2/song_hit1_anykey_hi95": 0.98}
    model = {"kind": "model", "protocol": {"top1": 1.0, "top1_lo95": 1.0, "top1_hi95": 1.0},
             "excerpt": {"hit@1": 0.9, "mrr": 0.92, "hit@1_lo95": 0.88, "hit@1_hi95": 0.92},
             "robustness": rob,
             "genre": {"balanced_knn_accuracy": 0.2, "precision@10": 0.5, "n_songs": 64,
                       "shuffled95_balanced": 0.1, "shuffled95_precision@10": 0.45, "same_genre_auc": 0.57,
                       "shuffled95_auc": 0.54},
             "versions": {"hit@1": 0.55, "hit@1_lo95": 0.48, "hit@1_hi95": 0.62}}
    base = {"kind": "baseline", "excerpt": {"hit@1": 0.7}, "genre": {"balanced_knn_accuracy": 0.25, "precision@10": 0.4,
                                                                   "same_genre_auc": 0.51}}
    got = {t["target"]: t for t in check_targets({"methods": {"model": model, "raw_cosine": base}})}
    assert got["original protocol top-1 ≥ 0.99"]["note"] == "95% interval 1.000–1.000"
    assert got["excerpt Hit@1 ≥ 0.85"]["met"] and "0.880–0.920" in got["excerpt Hit@1 ≥ 0.85"]["note"]
    worst = got["song Hit@1 ≥ 0.95 under every alteration (any-key for transpositions)"]
    assert worst["value"] == 0.97 and worst["met"] and "transpose_up_2" in worst["note"] and "0.960–0.980" in worst["note"]
    drop = got["drop_20pct_notes: altered phrase's original first ≥ 0.95"]
    assert drop["met"] and "0.940–0.970" in drop["note"]
    assert not got["genre balanced 10-NN above every baseline"]["met"]  # 0.2 < the baseline's 0.25
    assert got["genre precision@10 above every baseline"]["met"] and "0.450" in got["genre precision@10 above every baseline"]["note"]
    assert "same-genre AUC 0.570, best baseline 0.510, shuffled labels up to 0.540" in got["genre precision@10 above every baseline"]["note"]
    versions = got["version identification Hit@1 ≥ 0.50"]
    assert versions["met"] and "0.480–0.620" in versions["note"]


def test_every_model_row_meets_the_raw_cosine_targets_by_name():
    """'each model row better than raw_cosine at >= 1,000x lower query cost': the first model row
    and every other one (model_l2, --compare rows), each with its own excerpt and cost targets."""
    from midivae.evaluate.report import check_targets

    def row(kind, hit1, query_ms, paired=None):
        cost = {"query_ms": query_ms, "query_ms_dense": 100.0}
        if paired:
            cost.update(query_ms_paired=query_ms, raw_dense_ms_paired=100.0, speedup_vs_raw_dense=paired)
        return {"kind": kind, "excerpt": {"hit@1": hit1, "mrr": hit1}, "cost": cost}

    methods = {"model": row("model", 0.95, 0.08, 1250.0), "model_l2": row("model", 0.83, 0.11, 900.0),
               "model_old": row("model", 0.60, 0.05, 2000.0), "raw_cosine": row("baseline", 0.72, 1.0)}
    got = {t["target"]: t for t in check_targets({"methods": methods})}
    assert got["excerpt Hit@1 above raw_cosine"]["met"] and got["query ≥ 1,000x cheaper than raw_cosine (dense scan)"]["met"]
    assert got["excerpt Hit@1 above raw_cosine (model_l2)"]["met"]
    assert not got["query ≥ 1,000x cheaper than raw_cosine (dense scan) (model_l2)"]["met"]  # 900x
    assert not got["excerpt Hit@1 above raw_cosine (model_old)"]["met"]
    assert got["query ≥ 1,000x cheaper than raw_cosine (dense scan) (model_old)"]["value"] == 2000.0
    assert "raw_cosine (model)" not in " ".join(got)  # the first row keeps its plain names


def test_an_interrupted_run_leaves_no_version_folder(lpd_dir, tmp_path, monkeypatch):
    """Writing the generated versions takes minutes on thousands of songs: a run stopped there
    (Ctrl-C) removes the half-written folder like a finished run does."""
    import tempfile

    import pytest

    from midivae.evaluate import versions

    def interrupted(songs, folder, *args, **kwargs):
        (Path(folder) / "half-written.mid").write_bytes(b"MThd")
        raise KeyboardInterrupt

    monkeypatch.setattr(versions, "generated_versions", interrupted)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cfg = EvalConfig(data=lpd_dir, out=tmp_path / "report", use_model=False, max_songs=4, max_fit_songs=2,
                     tasks=("versions",), baselines=("random",), latent_dim=8)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(cfg)
    assert not any((tmp_path / "tmp").iterdir())


def test_a_bad_checkpoint_or_versions_csv_fails_before_the_songs_are_read(lpd_dir, tmp_path, monkeypatch):
    """Reading thousands of songs takes minutes: what fails in a second is checked first."""
    import pytest

    from midivae.errors import CheckpointError, InvalidInputError
    from midivae.evaluate import run

    def not_yet(*args, **kwargs):
        raise AssertionError("the songs were read first")

    monkeypatch.setattr(run, "load_eval_data", not_yet)
    (tmp_path / "bad.csv").write_text("a,b,c\nx.mid,1,2\n")
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="bad.csv: needs a file column"):
        run_evaluation(EvalConfig(data=lpd_dir, out=tmp_path / "r", use_model=False, versions_csv=tmp_path / "bad.csv"))
    with pytest.raises(CheckpointError, match="a checkpoint is a directory"):
        run_evaluation(EvalConfig(data=lpd_dir, out=tmp_path / "r", checkpoint=str(tmp_path / "weights.safetensors")))


def test_a_missing_label_folder_is_said_not_silent(lpd_dir, tmp_path):
    """Run from elsewhere without MIDIVAE_DATA, the default label folder is not there: the run says
    so in its log and its report instead of reporting "0 labelled songs" alone."""
    lines: list[str] = []
    cfg = EvalConfig(data=lpd_dir, out=tmp_path / "r", use_model=False, max_songs=6, max_fit_songs=2,
                     tasks=("genre",), baselines=("random",), latent_dim=8, labels_dir=tmp_path / "no-labels")
    m = run_evaluation(cfg, lines.append)
    assert m["data"]["labels_found"] is False
    assert any(f"no label folder at {tmp_path / 'no-labels'}" in line for line in lines)
    assert "no label folder at" in (tmp_path / "r" / "report.md").read_text()


def test_tasks_that_read_no_phrase_vectors_do_not_embed_the_collection(lpd_dir, tmp_path):
    """The protocol and the version task embed their own phrases: a run of those alone skips
    embedding every phrase of the collection (minutes for a model at 100,000 phrases)."""
    cfg = EvalConfig(data=lpd_dir, out=tmp_path / "r", use_model=False, max_songs=6, max_fit_songs=2,
                     tasks=("protocol", "versions"), baselines=("chroma",), versioned_songs=2, protocol_songs=6)
    m = run_evaluation(cfg)
    assert list(m["methods"]["chroma"]["task_seconds"]) == ["protocol", "versions"]


def test_skipped_files_are_said(lpd_dir, tmp_path):
    """A damaged file in the evaluated folder is skipped, and the run says which (a log line with
    the first one, the count in the report's data line), not only a count in metrics.json; MIDI
    files beside a folder's .npz songs are not read, and that is said too."""
    import shutil

    folder = tmp_path / "songs"
    for i, src in enumerate(sorted(lpd_dir.rglob("*.npz"))[:8]):
        (folder / f"TRSONG{i:012d}").mkdir(parents=True)
        shutil.copy(src, folder / f"TRSONG{i:012d}" / src.name)
    (folder / "TRDAMAGED000000000").mkdir()
    (folder / "TRDAMAGED000000000" / "x.npz").write_bytes(b"garbage")
    (folder / "rendering.mid").write_bytes(b"MThd")  # another kind beside the .npz songs: said, not read
    lines: list[str] = []
    cfg = EvalConfig(data=folder, out=tmp_path / "r", use_model=False, tasks=("protocol",), baselines=("random",),
                     latent_dim=8)
    m = run_evaluation(cfg, lines.append)
    assert m["data"]["skipped_files"] == 1
    assert any(line.startswith("data: 1 file skipped, e.g. ") and "x.npz" in line for line in lines)
    assert any("1 MIDI files beside them are not read" in line for line in lines)
    report_text = (tmp_path / "r" / "report.md").read_text()
    assert "1 file skipped (unreadable" in report_text and "1 MIDI files beside the .npz songs not read" in report_text
