"""Training: a phrase store in, a run directory of checkpoints, metrics and a loss curve out.

Data path: the train split stays bit-packed in RAM (10 KB per phrase); each batch is unpacked
on the training device (:func:`unpack_rows`), as 0/1 bytes for a model that reads them, else
float32; batches (and the augmented views of models that compare phrases with one)
are built by :mod:`midivae.model.batches`, on host threads ahead of a GPU.

Determinism without saving RNG states: the epoch's shuffle comes from ``(seed, epoch)`` and torch's
global RNG is re-seeded from ``(seed, epoch, batch)`` before every batch, so every random draw of
the model (the sampler; the views' generator is seeded from the same position) is a function of
the run's position alone.
``resume`` restores weights, optimizer state and that position, and continues exactly the run an
uninterrupted process would have made (same thread count and device assumed).

Run directory::

    last/  best/          checkpoints (see midivae.model.checkpoint); last/ also holds optimizer state
    metrics.csv           one row per validation (per epoch), the same rows as metrics.jsonl
    metrics.jsonl
    loss_curve.png
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midivae.constants import PHRASE_SHAPE
from midivae.data.store import unpack
from midivae.errors import CheckpointError, StoreError
from midivae.io.atomic import atomic_write_text
from midivae.memory import keep_freed_memory
from midivae.model import checkpoint as ckpt
from midivae.model.base import PhraseVAE
from midivae.model.batches import auto_loader_threads, batch_seed, epoch_batches
from midivae.model.config import RESUMABLE_FIELDS, TrainConfig, config_from_dict, config_to_dict
from midivae.model.metrics import (
    ThresholdHistogram,
    active_units,
    f1_report,
    onset_counts,
    quantise,
)

LAST, BEST = "last", "best"
METRICS_CSV, METRICS_JSONL, LOSS_CURVE = "metrics.csv", "metrics.jsonl", "loss_curve.png"


# --- environment -----------------------------------------------------------------------------

def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where unavailable)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast only pays on CPUs with native bf16 dot products (AVX-512 BF16 or AMX);
    on AVX2-only CPUs it is emulated and about 10x slower than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"device {spec!r} requested but CUDA is not available")
    return device


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused kernel (one pass per parameter tensor) where this torch has it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


# --- data ------------------------------------------------------------------------------------

_BIT_LUT = torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32))


def unpack_rows(packed: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bit-packed rows ``(n, 10080)`` -> 0/1 phrases ``(n, *PHRASE_SHAPE)`` of ``dtype`` on ``device``.

    On a CPU numpy unpacks (as bytes: 2 ms for 128 phrases, ~15x faster than the table lookup
    there); on a GPU only the packed bytes cross the bus and a 256-entry table unpacks them.
    """
    if device.type == "cpu":
        x = torch.from_numpy(unpack(packed.numpy() if isinstance(packed, torch.Tensor) else packed).view(np.uint8))
        return x if dtype == torch.uint8 else x.to(dtype)
    rows = packed if isinstance(packed, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(packed))
    rows = rows.to(device, non_blocking=True)
    lut = _BIT_LUT.to(device=device, dtype=dtype)
    return lut[rows.long()].reshape(rows.shape[0], *PHRASE_SHAPE)


def batch_dtype(model: PhraseVAE) -> torch.dtype:
    """What a model's batches are unpacked to: 0/1 bytes for one that reads them (no float copy
    of the batch; its loss makes the one it needs), else float32."""
    return torch.uint8 if model.encodes_uint8 else torch.float32


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def validation_seed(seed: int) -> int:
    return batch_seed(seed, 1 << 31, 0x7A1)


@dataclass
class Splits:
    train: np.ndarray  # packed rows in RAM
    val: np.ndarray
    val_source: str
    store: str
    train_song: np.ndarray | None = None  # song number of each train row (for song pairs)
    train_tempo: np.ndarray | None = None  # song tempo (BPM, NaN: unknown) of each train row (for the search head)

    @functools.cached_property
    def _songs_sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Train rows in song order, phrases per song, each song's first place in that order,
        and each row's place in it (one argsort per run, not per batch)."""
        if self.train_song is None:
            raise ValueError("song ids were not loaded")
        order = np.argsort(self.train_song, kind="stable")
        counts = np.bincount(self.train_song)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        where = np.empty_like(order)
        where[order] = np.arange(order.size)
        return order, counts, starts, where

    def song_partners(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each train row, another train row of the same song (itself when the song has
        one phrase), drawn uniformly."""
        order, counts, starts, where = self._songs_sorted
        song = self.train_song[rows]
        k = counts[song]
        pick = (rng.random(rows.size) * np.maximum(k - 1, 1)).astype(np.int64)
        own = where[rows] - starts[song]
        pick = np.where((k > 1) & (pick >= own), pick + 1, np.where(k > 1, pick, own))
        return order[starts[song] + pick]


def load_splits(store_path: str | os.PathLike[str], config: TrainConfig) -> Splits:
    from midivae.data.store import PhraseStore

    store = PhraseStore.open(store_path)
    try:
        train_rows = store.rows("train")
        if config.train_limit is not None:
            train_rows = train_rows[: config.train_limit]
        if train_rows.size == 0:
            raise StoreError(f"{store_path}: the train split holds no phrases")
        val_rows, source = store.rows("validation"), "validation"
        if val_rows.size == 0:  # tiny stores: validate on (a subset of) the train phrases
            val_rows, source = train_rows, "train"
        rng = np.random.default_rng([config.seed, 0xA1])
        if val_rows.size > config.val_size:
            val_rows = np.sort(rng.choice(val_rows, size=config.val_size, replace=False))
        _, train_song = np.unique(np.asarray(store.song_ids(train_rows), dtype=object), return_inverse=True)
        return Splits(
            train_song=train_song.astype(np.int64).reshape(-1),
            train_tempo=store.tempi(train_rows),
            train=np.ascontiguousarray(store.packed(train_rows)),
            val=np.ascontiguousarray(store.packed(val_rows)),
            val_source=source,
            store=str(Path(store_path).resolve()),
        )
    finally:
        store.close()


# --- validation ------------------------------------------------------------------------------

@torch.no_grad()
def validate(
    model: PhraseVAE,
    packed: np.ndarray,
    beta: float,
    seed: int,
    device: torch.device,
    bf16: bool = False,
    batch_size: int = 256,
) -> tuple[dict[str, float], np.ndarray]:
    """Validation metrics and the per-track thresholds that maximise cell F1.

    Losses use the model's own ``loss`` (sampled z, fixed seed); F1 and active units use the
    posterior mean. Returns ``(metrics, thresholds)``; metric keys have no ``val_`` prefix.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    hist = ThresholdHistogram()
    mus, all_bins, targets = [], [], []
    torch.manual_seed(seed)
    n = packed.shape[0]
    for start in range(0, n, batch_size):
        x = unpack_rows(packed[start : start + batch_size], device, batch_dtype(model))
        with autocast(device, bf16):
            losses = model.loss(x, beta)
            mu, _ = model.encode(x)
            probs = torch.sigmoid(model.decode(mu).float())
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value) * x.shape[0]
        bins = quantise(probs)
        target = x.to(torch.uint8)
        hist.update(bins, target)
        mus.append(mu.float().cpu().numpy())
        all_bins.append(bins)  # kept on the device: the onset counts run there
        targets.append(target)
    model.train(was_training)
    metrics = {key: value / n for key, value in sums.items()}
    thresholds, cell_counts = hist.best()
    onset = sum(onset_counts(b, t, thresholds) for b, t in zip(all_bins, targets))
    metrics.update(f1_report(cell_counts, "cell"))
    metrics.update(f1_report(onset, "onset"))
    mu_all = np.concatenate(mus)
    metrics["active_units"] = active_units(mu_all)
    metrics["f1"] = metrics["onset_f1"]
    return metrics, thresholds


# --- the run ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_dir: Path
    last_dir: Path
    arch: str
    epochs_completed: int
    best_epoch: int
    best_val_loss: float
    stopped: str  # "epochs", "early stopping" or "time budget"
    elapsed_s: float
    train_samples_per_s: float
    checkpoint_id: str
    last_metrics: dict[str, Any] = field(default_factory=dict)


def _write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / METRICS_JSONL, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / METRICS_CSV, buf.getvalue())
    try:
        from midivae.plot import plot_loss_curves

        plot_loss_curves(rows, run_dir / LOSS_CURVE, title=run_dir.name)
    except Exception:  # noqa: BLE001 - a failed plot must never lose a training run
        pass


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="batch", dynamic_ncols=True, leave=False)


def _resolve_configs(
    out: Path,
    arch: str,
    model_config: Any,
    train_config: TrainConfig | None,
    resume: bool,
) -> tuple[type[PhraseVAE], Any, TrainConfig, dict[str, Any] | None]:
    last = out / LAST
    if resume and (last / ckpt.CONFIG_FILE).is_file():
        info = ckpt.read_info(last)
        cls = ckpt.architecture(info.arch)
        stored_train = info.train_config or TrainConfig()
        if train_config is not None:
            changed = {
                k for k, v in config_to_dict(train_config).items() if config_to_dict(stored_train)[k] != v
            } - RESUMABLE_FIELDS
            if changed:
                raise CheckpointError(
                    f"{out}: cannot resume with other {', '.join(sorted(changed))} "
                    f"(only {', '.join(sorted(RESUMABLE_FIELDS))} may change)"
                )
            stored_train = train_config
        return cls, config_from_dict(cls.Config, info.model_config), stored_train, {"from": last}
    if not resume and (last / ckpt.CONFIG_FILE).is_file():
        raise CheckpointError(f"{out} already holds a training run: pass resume (--resume) or another output folder")
    cls = ckpt.architecture(arch)
    if model_config is None:
        model_config = cls.Config()
    elif isinstance(model_config, dict):
        model_config = config_from_dict(cls.Config, model_config)
    return cls, model_config, train_config or TrainConfig(), None


def train(
    store_path: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    arch: str = "reference",
    model_config: Any = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) a phrase VAE on a store's train split.

    ``progress`` shows a progress bar; ``verbose`` (default: as ``progress``) prints one line
    per validation. ``resume`` continues the run in ``out_dir/last`` (and starts a new one if there is none);
    the stored architecture and configs are used, and only the fields in ``RESUMABLE_FIELDS``
    may be changed by a ``train_config`` passed along. ``store_path`` may be None on resume.
    """
    out = Path(out_dir)
    cls, mcfg, cfg, resumed = _resolve_configs(out, arch, model_config, train_config, resume)
    # every step frees and allocates the same tens of MB of tensors: reuse them rather than
    # page-fault them in anew (reference model 1.25-1.3x through `midivae train` on 2 cores;
    # benchmarks/train_speed.py)
    keep_freed_memory()
    device = resolve_device(cfg.device)
    bf16 = use_bf16(device, cfg.precision)
    threads_before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)  # initial weights
        model = cls(mcfg).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg.lr)
        state: dict[str, Any] = {
            "epoch": 0, "next_batch": 0, "global_step": 0, "elapsed_s": 0.0, "best_val_loss": math.inf,
            "best_epoch": 0, "bad_epochs": 0, "history": [], "running": {}, "running_n": 0,
            "samples": 0, "train_s": 0.0, "stopped": "", "store": None,
        }
        if resumed is not None:
            loaded = ckpt.load_checkpoint(resumed["from"], device=device)
            model.load_state_dict(loaded.state_dict())
            state.update(ckpt.load_training_state(resumed["from"], optimizer))
            if store_path is None:
                store_path = state.get("store")
        elif cfg.init_from is not None:
            start = ckpt.load_checkpoint(cfg.init_from, device=device)
            if start.name != cls.name:
                raise CheckpointError(f"{cfg.init_from}: holds a {start.name!r} model, not {cls.name!r}")
            try:
                model.load_state_dict(model.init_state_from(start.state_dict()))
            except RuntimeError as exc:
                raise CheckpointError(f"{cfg.init_from}: weights do not fit this model configuration ({exc})") from None
            cfg = dataclasses.replace(cfg, init_checkpoint_id=start.checkpoint_id)
        if store_path is None:
            raise StoreError("no phrase store given (--data)")
        splits = load_splits(store_path, cfg)
        state["store"] = splits.store
        return _run(model, optimizer, cfg, splits, state, out, device, bf16, progress, progress if verbose is None else verbose)
    finally:
        torch.set_num_threads(threads_before)


#: optimizer steps between reads of the losses from the device
LOSS_READ_STEPS = 10


class _LossLog:
    """Each step's losses, read from the device every few steps into the running sums.

    A read waits for the device; once per step it left a GPU idle while the host launched the
    next step. The sums are added step by step as before (the same floats), and a non-finite
    loss still stops the run, naming its batch, before any checkpoint holds its weights.
    """

    def __init__(self, state: dict[str, Any], epoch: int) -> None:
        self.state, self.epoch = state, epoch
        self.pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def add(self, batch: int, losses: dict[str, torch.Tensor]) -> None:
        self.pending.append((batch, {k: v.detach() for k, v in losses.items()}))

    def read(self) -> None:
        if not self.pending:
            return
        values = iter(torch.stack([v.float().reshape(()) for _, step in self.pending for v in step.values()]).tolist())
        running = self.state["running"]
        for batch, step in self.pending:
            read = {key: next(values) for key in step}
            if not math.isfinite(read["loss"]):
                raise FloatingPointError(f"loss became {read['loss']} at epoch {self.epoch + 1}, batch {batch}: lower --lr?")
            for key, value in read.items():
                running[key] = running.get(key, 0.0) + value
            self.state["running_n"] += 1
        self.pending.clear()


def _run(
    model: PhraseVAE,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    splits: Splits,
    state: dict[str, Any],
    out: Path,
    device: torch.device,
    bf16: bool,
    progress: bool,
    verbose: bool,
) -> TrainResult:
    out.mkdir(parents=True, exist_ok=True)
    n_train = splits.train.shape[0]
    bs = min(cfg.batch_size, n_train)
    n_batches = n_train // bs  # the incomplete last batch of a shuffle is dropped
    loader_threads = auto_loader_threads(cfg.loader_threads, device)
    x_dtype = batch_dtype(model)
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else math.inf
    stopped = "epochs" if state["epoch"] >= cfg.epochs else ""
    last_id = ""
    model.train()
    while not stopped:
        epoch = state["epoch"]
        perm = epoch_permutation(cfg.seed, epoch, n_train)
        bar = _progress(n_batches, state["next_batch"], progress, f"epoch {epoch + 1}/{cfg.epochs}")
        partial = False
        t_epoch, samples_epoch = time.perf_counter(), 0
        log = _LossLog(state, epoch)
        batches = epoch_batches(model, splits, perm, bs, cfg.seed, epoch, state["next_batch"], n_batches,
                                threads=loader_threads, pin=device.type == "cuda")
        with bar, contextlib.closing(batches):
            t0 = time.perf_counter()
            for batch in batches:
                b = batch.number
                torch.manual_seed(batch_seed(cfg.seed, epoch, b))
                x = unpack_rows(batch.packed, device, x_dtype)
                anneal = min(1.0, (state["global_step"] + 1) / cfg.kl_anneal_steps) if cfg.kl_anneal_steps else 1.0
                beta = cfg.beta * anneal
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, bf16):
                    extra: dict[str, Any] = {"song_pairs": True} if batch.song_pairs else {}
                    if batch.view is not None:
                        extra["view"] = batch.view.to(device, non_blocking=True)
                    if cfg.free_bits > 0:
                        extra["free_bits"] = cfg.free_bits
                    losses = model.loss(x, beta, **extra)
                losses["loss"].backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                state["global_step"] += 1
                state["next_batch"] = b + 1
                log.add(b, losses)
                dt, t0 = time.perf_counter() - t0, time.perf_counter()  # waiting for the batch counts too
                state["elapsed_s"] += dt
                state["train_s"] += dt
                state["samples"] += x.shape[0]
                samples_epoch += x.shape[0]
                partial = state["elapsed_s"] >= budget_s and b + 1 < n_batches
                if len(log.pending) >= LOSS_READ_STEPS or b == n_batches - 1 or partial:
                    log.read()
                    if progress:
                        r, k = state["running"], state["running_n"]
                        bar.set_postfix(
                            loss=f"{r['loss'] / k:.1f}", recon=f"{r['recon'] / k:.1f}", kl=f"{r['kl'] / k:.1f}",
                            sps=f"{samples_epoch / (time.perf_counter() - t_epoch):.0f}",
                        )
                bar.update(1)
                if partial:
                    break
        log.read()
        t_val = time.perf_counter()
        val, thresholds = validate(model, splits.val, cfg.beta, validation_seed(cfg.seed), device, bf16, max(bs, 64))
        k = max(state["running_n"], 1)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "partial": partial,
            "step": state["global_step"],
            "beta": cfg.beta * (min(1.0, state["global_step"] / cfg.kl_anneal_steps) if cfg.kl_anneal_steps else 1.0),
            **{f"train_{key}": value / k for key, value in state["running"].items()},
            **{f"val_{key}": value for key, value in val.items()},
            "val_source": splits.val_source,
            "train_samples_per_s": state["samples"] / max(state["train_s"], 1e-9),
            "elapsed_s": state["elapsed_s"],
        }
        state["elapsed_s"] += time.perf_counter() - t_val
        state["history"].append(row)
        # best/ holds the lowest validation loss seen, a partial epoch's (time budget) included;
        # early stopping counts complete epochs only.
        improved = row["val_loss"] < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_epoch"] = row["val_loss"], epoch + 1
        if partial:
            stopped = "time budget"
        else:
            state["epoch"], state["next_batch"] = epoch + 1, 0
            state["running"], state["running_n"] = {}, 0
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            if state["epoch"] >= cfg.epochs:
                stopped = "epochs"
            elif cfg.patience and state["bad_epochs"] >= cfg.patience:
                stopped = "early stopping"
            elif state["elapsed_s"] >= budget_s:
                stopped = "time budget"
        metrics = {k2: v for k2, v in row.items() if isinstance(v, (int, float))}
        if improved or not (out / BEST / ckpt.CONFIG_FILE).exists():
            ckpt.save_checkpoint(out / BEST, model, cfg, epoch=epoch + 1, metrics=metrics, thresholds=list(thresholds))
        state["stopped"] = stopped
        last_id = ckpt.save_checkpoint(
            out / LAST, model, cfg, epoch=state["epoch"], metrics=metrics, thresholds=list(thresholds),
            optimizer=optimizer, trainer_state=_jsonable(state),
        )
        _write_history(out, state["history"])
        if verbose:
            _print_row(row, improved)
    if (out / BEST / ckpt.WEIGHTS_FILE).exists():
        if verbose:
            print(f"fitting the search head of {out / BEST} on the train phrases (a minute or two)", file=sys.stderr)
        fit_search_head_of(out / BEST, splits.train, cfg.seed, train_song=splits.train_song,
                           train_tempo=splits.train_tempo)
    best_id = ckpt.checkpoint_id(out / BEST) if (out / BEST / ckpt.WEIGHTS_FILE).exists() else last_id
    return TrainResult(
        run_dir=out,
        best_dir=out / BEST,
        last_dir=out / LAST,
        arch=model.name,
        epochs_completed=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val_loss=float(state["best_val_loss"]),
        stopped=stopped,
        elapsed_s=float(state["elapsed_s"]),
        train_samples_per_s=state["samples"] / max(state["train_s"], 1e-9),
        checkpoint_id=best_id,
        last_metrics=state["history"][-1] if state["history"] else {},
    )


#: training phrases the search head's rotation is fitted on (the SVD of a few thousand suffices)
SEARCH_FIT_ROWS = 8192
#: training phrases a song projection is fitted on (it learns from pairs of phrases of a song: all
#: of a store's train split, up to this many)
SONG_FIT_ROWS = 65536


def fit_search_head_of(checkpoint: Path, packed_train: np.ndarray, seed: int = 0,
                       train_song: np.ndarray | None = None, train_tempo: np.ndarray | None = None,
                       **settings) -> None:
    """Fit the checkpoint's search head on (a sample of) its training phrases and store it beside
    the weights (``search.safetensors``; see :mod:`midivae.model.search_head`). With ``train_song``
    (each row's song number) and an architecture with per-bar parts, it gets a song projection,
    fitted on up to ``SONG_FIT_ROWS`` rows, reading each row's song tempo where ``train_tempo``
    gives it (BPM; NaN: unknown)."""
    from midivae.model.api import load_model
    from midivae.model.search_head import SongFit, fit_search_head, save_search_head

    model = load_model(checkpoint)
    n = packed_train.shape[0]
    with_song = train_song is not None and model.vae.bar_part_dim > 0 and _paired_songs(train_song) >= 2
    size = min(n, SONG_FIT_ROWS if with_song else SEARCH_FIT_ROWS)
    rows = np.sort(np.random.default_rng([seed, 0x5EA]).choice(n, size=size, replace=False))
    if rows.size < model.latent_dim:
        return  # too few phrases for a rotation: the index keeps the plain scan
    if not with_song:
        mu = model.encode_mean(_unpacked(packed_train[rows]))
        save_search_head(fit_search_head(mu, **settings), checkpoint)
        return
    from midivae.data.style import phrase_style

    parts: list[list[np.ndarray]] = [[], [], []]
    for a in range(0, rows.size, 1024):
        chunk = rows[a : a + 1024]
        phrases = _unpacked(packed_train[chunk])
        mu, _, bars = model.encode_with_bars(phrases)
        for out, x in zip(parts, (mu, bars, phrase_style(phrases, None if train_tempo is None else train_tempo[chunk]))):
            out.append(x)
    mu, bars, style = (np.concatenate(p) for p in parts)
    fit = SongFit(bars, style, np.asarray(train_song)[rows], seed)
    save_search_head(fit_search_head(mu, fit, **settings), checkpoint)


def _unpacked(packed: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(packed, axis=1, count=int(np.prod(PHRASE_SHAPE)))
    return bits.view(bool).reshape(packed.shape[0], *PHRASE_SHAPE)


def _paired_songs(song: np.ndarray) -> int:
    """Songs with at least two phrases (a song projection learns from pairs)."""
    return int((np.bincount(np.unique(np.asarray(song), return_inverse=True)[1].ravel()) >= 2).sum())


def _jsonable(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state, default=float))


def _print_row(row: dict[str, Any], best: bool) -> None:
    from tqdm.auto import tqdm

    tqdm.write(  # stderr, like the bar: stdout stays for the summary (and --json)
        f"epoch {row['epoch']}{' (partial)' if row['partial'] else ''}: "
        f"train loss {row.get('train_loss', float('nan')):.2f}  val loss {row['val_loss']:.2f} "
        f"(recon {row['val_recon']:.2f}, KL {row['val_kl']:.2f})  F1 onset {row['val_onset_f1']:.3f} "
        f"cell {row['val_cell_f1']:.3f}  active units {row['val_active_units']}  "
        f"{row['train_samples_per_s']:.0f} samples/s{'  *best*' if best else ''}",
        file=sys.stderr,
    )

