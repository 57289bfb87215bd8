"""``midivae evaluate``: the model and the baselines on every task, in one report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from midivae.cli.common import echo_json, json_option, progress_enabled, quiet_option
from midivae.evaluate.versions import DEFAULT_PRESET, VERSION_PRESETS


def register(main: click.Group) -> None:
    main.add_command(evaluate)


@click.command()
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Phrase store (its test split is evaluated), LPD-5 folder of .npz, or folder of MIDI files.")
@click.option("--checkpoint", default=None, help="Model checkpoint (default: the shipped model, when there is one).")
@click.option("--compare", "compare", multiple=True, metavar="CKPT",
              help="Another checkpoint evaluated in the same run as an extra model row (repeatable).")
@click.option("--no-model", is_flag=True, help="Evaluate the baselines only.")
@click.option("--split", "split_name", type=click.Choice(["test", "validation", "train"]), default="test", show_default=True,
              help="Which split of a phrase store is evaluated (choose models on validation, report on test).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Report folder (report.md, metrics.json, PNGs).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the markdown report to this file (e.g. docs/evaluation.md), picture links relative to it.")
@click.option("--tasks", default=None, help="Comma-separated subset of: protocol, excerpt, robustness, genre, "
              "reconstruction, versions, cost, pictures (default: all).")
@click.option("--baselines", default=None, help="Comma-separated subset of: raw, raw_cosine, chroma, pca, bag_of_bars, "
              "bag_of_bars_pca, random (default: all).")
@click.option("--max-songs", type=click.IntRange(min=1), default=None, help="Evaluate at most N songs (a seeded random subset).")
@click.option("--fit-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Songs the PCA baselines fit on (default: the store's train split, or a hash-chosen 30% of a folder).")
@click.option("--max-fit-songs", type=click.IntRange(min=1), default=200, show_default=True, help="Songs used to fit the PCA baselines.")
@click.option("--versions-csv", type=click.Path(exists=True, path_type=Path), default=None,
              help="CSV file,song naming which files of a folder of versions (MIDI or LPD-5 .npz) are transcriptions "
                   "of one song; every other file is a distractor (default: a folder generated from the evaluated songs). "
                   "Two columns may carry any header or none; files are found by path, else by their unique name.")
@click.option("--versions-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of the version files (default: the CSV's folder); alone, its versions.csv is read.")
@click.option("--versions-preset", type=click.Choice(list(VERSION_PRESETS)), default=DEFAULT_PRESET,
              show_default=True,
              help="How generated versions differ from their song: basic = note-level changes; hard = also bar "
                   "lines on another beat, a part left out, double/half time, a section cut or repeated; "
                   "hard-drums = also another drum part (left out, or thinned with its cymbals swapped) half the time.")
@click.option("--labels", "labels_dir", type=click.Path(exists=True, path_type=Path), default=None,
              help="AllMusic id_list_*.txt folder (default: $MIDIVAE_DATA/lpd5/labels/amg).")
@click.option("--excerpt-queries", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="Excerpt retrieval queries at most this many of the second-half phrases, a seeded sample the same "
                   "for every method (0: all; each query is compared with every indexed phrase, so all of them "
                   "cost the square of the collection).")
@click.option("--robustness-queries", type=click.IntRange(min=1), default=1000, show_default=True, help="Sampled phrases altered per alteration.")
@click.option("--any-key-queries", type=click.IntRange(min=0), default=500, show_default=True,
              help="How many of them the any-key search (12 transpositions per query) runs on.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=64, show_default=True, help="Size of PCA/random baselines when no model is evaluated.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the song subsets, sampled queries, alterations and generated versions.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads comparing query chunks against the collection (default: the cores, at most 4; "
                   "results do not depend on it; timings always run on one).")
@quiet_option
@json_option
def evaluate(data, checkpoint, compare, no_model, split_name, out, report_path, tasks, baselines, max_songs, fit_data, max_fit_songs, versions_csv,
             versions_dir, versions_preset, labels_dir, excerpt_queries, robustness_queries, any_key_queries, latent_dim, seed,
             threads, quiet, as_json) -> None:
    """Evaluate the model and the baselines (raw, raw_cosine, chroma, pca, bag_of_bars,
    bag_of_bars_pca, random) on the original protocol and real retrieval tasks; write
    OUT/report.md, OUT/metrics.json and PNG plots."""
    from midivae.evaluate.baselines import BASELINE_NAMES
    from midivae.evaluate.run import TASKS, EvalConfig, run_evaluation

    def split(text, known):
        if text is None:
            return tuple(known)
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in known]
        if bad:
            raise click.BadParameter(f"unknown: {', '.join(bad)} (known: {', '.join(known)})")
        return items

    cfg = EvalConfig(
        data=data, out=out, checkpoint=checkpoint, use_model=not no_model, tasks=split(tasks, TASKS),
        baselines=split(baselines, BASELINE_NAMES), max_songs=max_songs, max_fit_songs=max_fit_songs,
        fit_data=fit_data, versions_csv=versions_csv, versions_dir=versions_dir, versions_preset=versions_preset, labels_dir=labels_dir,
        excerpt_queries=excerpt_queries or None, robustness_queries=robustness_queries, any_key_queries=any_key_queries, latent_dim=latent_dim, seed=seed,
        report_path=report_path, split=split_name, extra_models=tuple(compare), threads=threads,
        command="midivae evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "",
    )
    log = (lambda s: None) if quiet or as_json else (lambda s: click.echo(s, err=True))
    metrics = run_evaluation(cfg, log, bars=progress_enabled(quiet) and not as_json)  # log lines stay, bars only on a terminal
    targets = [t for t in metrics.get("targets", []) if t["met"] is not None]
    if as_json:
        echo_json({"report": str(out / "report.md"), "metrics": str(out / "metrics.json"),
                   "methods": list(metrics["methods"]), "seconds": metrics["seconds_total"], "targets": targets})
        return
    click.echo(f"{out / 'report.md'}  ({len(metrics['methods'])} methods, {metrics['seconds_total']:.0f} s)")
    if targets:
        missed = [t["target"] for t in targets if not t["met"]]
        click.echo(f"targets: {len(targets) - len(missed)} of {len(targets)} met"
                   + (f"; missed: {'; '.join(missed)}" if missed else ""))
