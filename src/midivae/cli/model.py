"""``midivae train``, ``midivae reconstruct`` and ``midivae sample``: the VAE from the command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from midivae.cli.common import echo_json, json_option, progress_enabled, quiet_option


def _arch_names() -> list[str]:
    from midivae.model import ARCHITECTURES

    return sorted(ARCHITECTURES)


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


# train options that map one-to-one onto TrainConfig fields (None = not given)
_TRAIN_FIELDS = (
    "epochs", "batch_size", "lr", "beta", "kl_anneal_steps", "free_bits", "seed", "patience", "threads",
    "loader_threads", "max_minutes", "val_size", "device", "precision", "train_limit",
)


@click.command()
@click.option("--data", "-d", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Phrase store to train on (its train split; validation split for metrics). "
                   "Optional with --resume (the run remembers its store).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (required): last/ and best/ checkpoints, metrics.csv/.jsonl, loss_curve.png.")
@click.option("--arch", default="reference", show_default=True,
              help="Architecture name (registered: see `midivae train --list-archs`).")
@click.option("--list-archs", is_flag=True, help="List the architectures and their options, then exit.")
@click.option("--epochs", type=int, help="Epochs over the train split [30].")
@click.option("--batch-size", type=int, help="Phrases per optimizer step [128].")
@click.option("--lr", type=float, help="Adam learning rate [1e-3].")
@click.option("--beta", type=float, help="Weight of the KL term [1.0].")
@click.option("--kl-anneal-steps", type=int, help="Linear KL warm-up from 0 to beta over this many steps [0: off].")
@click.option("--free-bits", type=float, help="Nats per latent dim the KL term does not penalise [0: off].")
@click.option("--latent-dim", type=int, help="Latent size (architecture option; same as --set latent_dim=N).")
@click.option("--seed", type=int, help="Seed of initial weights, shuffling and sampling [0]. Same seed, same run.")
@click.option("--patience", type=int, help="Early stopping: epochs without a better validation loss [5; 0: off].")
@click.option("--threads", type=int, help="CPU threads for torch [2; 0: torch's default].")
@click.option("--loader-threads", type=int,
              help="Host threads building the next batches while the model trains [-1: none on a CPU, up to 4 on a GPU]; results do not depend on it.")
@click.option("--max-minutes", type=float, help="Time budget: stop (with a checkpoint) after this many minutes of training.")
@click.option("--val-size", type=int, help="Validation phrases evaluated each epoch [2048].")
@click.option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N [auto].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="auto: bf16 autocast only where the hardware has fast bf16 (never on AVX2-only CPUs) [auto].")
@click.option("--train-limit", type=int, help="Use at most this many train phrases (quick experiments).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Architecture option, e.g. --set latent_dim=64 (repeatable; see --list-archs).")
@click.option("--init-from", metavar="CKPT",
              help="Start from this checkpoint's weights (a run folder, a best/ or last/ folder, or "
                   "'shipped'); its architecture and options are kept unless --set changes them. "
                   "A new run with a fresh optimizer: fine-tuning, or training on past a finished run.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out exactly where its last checkpoint left it "
                   "(same data order, RNG stream and optimizer state). Starts a new run if there is none.")
@quiet_option
@json_option
def train(data, out, arch, list_archs, latent_dim, sets, init_from, resume, quiet, as_json, **options) -> None:
    """Train a phrase VAE on a phrase store.

    Shows a progress bar (loss, reconstruction, KL, samples/s), validates every epoch
    (reconstruction, KL, per-track precision/recall/F1 at the best threshold, active latent
    units), and writes OUT/last (every epoch, resumable) and OUT/best (lowest validation loss).

    \b
    Example:
      midivae train --data store/ --out runs/ref --epochs 10 --max-minutes 30
      midivae train --out runs/ref --resume          # continue after an interruption
      midivae train --data store/ --out runs/ft --init-from shipped --max-minutes 20
    """
    from midivae.model import ARCHITECTURES
    from midivae.model.checkpoint import read_info
    from midivae.model.api import resolve_checkpoint_dir
    from midivae.model.config import TrainConfig, config_from_dict, with_overrides
    from midivae.model.train import LAST, train as run_train

    if list_archs:
        for name in sorted(ARCHITECTURES):
            cls = ARCHITECTURES[name]
            opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config))
            click.echo(f"{name}: {opts}")
        return
    if out is None:
        raise click.UsageError("--out is required")
    if arch not in ARCHITECTURES:
        raise click.BadParameter(f"unknown architecture {arch!r} (known: {', '.join(_arch_names())})", param_hint="--arch")
    if data is None and not resume:
        raise click.UsageError("--data is required (except with --resume)")
    given = {k: v for k, v in options.items() if k in _TRAIN_FIELDS and v is not None}
    model_sets = _parse_sets(sets)
    if latent_dim is not None:
        model_sets["latent_dim"] = str(latent_dim)

    if init_from is not None and resume:
        raise click.UsageError("--init-from starts a new run; it cannot be combined with --resume")
    stored = (out / LAST / "config.json").is_file()
    if resume and stored:
        if model_sets:
            raise click.UsageError("architecture options cannot change on --resume")
        base = read_info(out / LAST).train_config or TrainConfig()
        model_config = None
    else:
        base = TrainConfig()
        start_config = ARCHITECTURES[arch].Config()
        if init_from is not None:
            init_path = resolve_checkpoint_dir(init_from)
            info = read_info(init_path)
            arch, start_config = info.arch, config_from_dict(ARCHITECTURES[info.arch].Config, info.model_config)
            given["init_from"] = str(init_path)
        try:
            model_config = with_overrides(start_config, model_sets)
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--set") from exc
    try:
        train_config = dataclasses.replace(base, **given)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from exc

    result = run_train(
        data, out, arch=arch, model_config=model_config, train_config=train_config,
        resume=resume, progress=progress_enabled(quiet), verbose=not quiet,
    )
    summary = {
        "run": str(result.run_dir), "best": str(result.best_dir), "arch": result.arch,
        "checkpoint_id": result.checkpoint_id, "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss, "stopped": result.stopped,
        "elapsed_s": round(result.elapsed_s, 1), "train_samples_per_s": round(result.train_samples_per_s, 1),
    }
    m = result.last_metrics
    for key in ("val_recon", "val_kl", "val_cell_f1", "val_onset_f1", "val_active_units"):
        if key in m:
            summary[key] = m[key]
    if as_json:
        echo_json(summary)
        return
    for key, value in summary.items():
        click.echo(f"{key:18s} {value:.4g}" if isinstance(value, float) else f"{key:18s} {value}")


_checkpoint_option = click.option(
    "--checkpoint", "-c", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint folder (RUN/best, RUN/last, or a run folder) [the shipped pretrained model].",
)
_mode_option = click.option(
    "--sample/--threshold", "bernoulli", default=False, show_default=True,
    help="Turn probabilities into notes by Bernoulli sampling, or by the per-track thresholds learnt on validation.",
)
_temperature_option = click.option(
    "--temperature", "-t", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
    help="With --sample: logit temperature (<1 sharper, >1 noisier). For `sample` it also scales the latent prior.",
)


def _notes(model, probs, bernoulli: bool, temperature: float, seed: int | None):
    return model.bernoulli(probs, temperature, seed) if bernoulli else model.threshold(probs)


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_checkpoint_option
@_mode_option
@_temperature_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@json_option
def reconstruct(source: Path, out: Path, checkpoint, bernoulli: bool, temperature: float, seed: int, as_json: bool) -> None:
    """Encode a song (MIDI or LPD .npz) and decode it again: writes OUT (MIDI) and OUT.png.

    Each 4-bar phrase is encoded to its posterior mean and decoded to note probabilities,
    which become notes by the learnt thresholds (default) or by sampling. Prints how many of
    the input's active cells came back (precision/recall/F1 over pianoroll cells).
    """
    import numpy as np

    from midivae.io import write_midi
    from midivae.model import load_model, read_phrases
    from midivae.plot import plot_pianoroll

    model = load_model(checkpoint)
    phrases = read_phrases(source)
    if phrases.shape[0] == 0:
        from midivae.errors import InvalidInputError

        raise InvalidInputError(source, "no non-empty 4-bar phrase to reconstruct")
    probs = model.reconstruct(phrases)
    notes = _notes(model, probs, bernoulli, temperature, seed)
    write_midi(out, notes)
    png = out.with_suffix(".png")
    plot_pianoroll(notes, png, title=f"{source.name} reconstructed ({model.arch}, {model.checkpoint_id})")
    tp = int(np.count_nonzero(notes & phrases))
    fp = int(np.count_nonzero(notes & ~phrases))
    fn = int(np.count_nonzero(~notes & phrases))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    result = {
        "source": str(source), "midi": str(out), "png": str(png), "phrases": int(phrases.shape[0]),
        "checkpoint_id": model.checkpoint_id, "mode": "sample" if bernoulli else "threshold",
        "cell_precision": round(p, 4), "cell_recall": round(r, 4), "cell_f1": round(f1, 4),
    }
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['phrases']} phrases -> {out} and {png}")
    click.echo(f"cells: precision {p:.3f}  recall {r:.3f}  F1 {f1:.3f}")


@click.command()
@click.option("-n", "count", type=click.IntRange(min=1), default=4, show_default=True, help="Number of phrases to sample.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for sample_NNN.mid and sample_NNN.png.")
@_checkpoint_option
@_mode_option
@_temperature_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latent draws (and of --sample).")
@json_option
def sample(count: int, out: Path, checkpoint, bernoulli: bool, temperature: float, seed: int, as_json: bool) -> None:
    """Generate phrases: decode z ~ N(0, temperature^2 I) and write a MIDI file and a PNG per phrase."""
    from midivae.io import write_midi
    from midivae.model import load_model
    from midivae.plot import plot_pianoroll

    model = load_model(checkpoint)
    probs = model.sample(count, temperature=temperature, seed=seed)
    notes = _notes(model, probs, bernoulli, temperature, seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, phrase in enumerate(notes):
        midi = out / f"sample_{i:03d}.mid"
        write_midi(midi, phrase[None])
        plot_pianoroll(phrase, midi.with_suffix(".png"), title=f"sample {i} (T={temperature}, seed={seed})")
        written.append({"midi": str(midi), "png": str(midi.with_suffix(".png")), "cells_on": int(phrase.sum())})
    if as_json:
        echo_json({"checkpoint_id": model.checkpoint_id, "samples": written})
        return
    for item in written:
        click.echo(f"{item['midi']}  ({item['cells_on']} cells on)")


def register(main: click.Group) -> None:
    main.add_command(train)
    main.add_command(reconstruct)
    main.add_command(sample)
