"""Training samples/s of the shipped retrieval architecture: the augmented view built inside the
loss (before) against batches and views built by the loader, on 0..N host threads (after).

Usage:  python benchmarks/train_loader.py [--device cuda] [--songs 400] [--steps 40] [--threads 0,1,2,4]

All rows in one run, on one store of real LPD-5 songs (ingested into a temporary folder from
``$MIDIVAE_DATA``), the shipped model's configuration, batch 128 of song pairs, the trainer's
precision rule (bf16 autocast on a GPU), Adam. Rows:

* ``view in the loss``: what the trainer did before: the batch is unpacked on the device, and the
  loss copies it back to the host, finds its cells, alters them in numpy and copies the view over;
* ``loader, T threads``: :func:`midivae.model.batches.epoch_batches`: the view comes from the
  packed rows the trainer holds (no copy back), built on ``T`` host threads ahead of the device
  (0: in the training loop);
* ``device only``: one batch and its view reused every step: the device's own ceiling;
* ``view in the loss, again``: the first row repeated, a measure of the noise.

The first row builds its view as the loss does today when given none (0/1 bytes); before session
12 it was built as float32, a little slower, so the row slightly flatters the old trainer.

Each row: the median of 3 timed stretches of ``--steps`` steps after warm-up steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from midivae.data.ingest import ingest
from midivae.model.batches import batch_seed, epoch_batches
from midivae.model.api import pretrained_path
from midivae.model.checkpoint import load_checkpoint
from midivae.model.config import TrainConfig
from midivae.model.retrieval import RetrievalVAE
from midivae.model.train import autocast, cpu_flags, epoch_permutation, load_splits, make_optimizer, unpack_rows, use_bf16

DATA = Path(os.environ.get("MIDIVAE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, optimizer, x, device, bf16, view=None) -> None:
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, bf16):
        extra = {"view": view} if view is not None else {}
        loss = model.loss(x, 0.1, song_pairs=True, **extra)["loss"]
    loss.backward()
    optimizer.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--songs", type=int, default=400)
    ap.add_argument("--steps", type=int, default=40, help="steps per timed stretch")
    ap.add_argument("--threads", default="0,1,2,4", help="loader threads to time (comma-separated)")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    flags = cpu_flags()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}; flags: "
          + ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")))
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    files = sorted((DATA / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[: args.songs]
    if not files:
        sys.exit(f"no LPD-5 songs under {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        ingest(files, Path(tmp) / "store", workers=min(8, os.cpu_count() or 1))
        cfg = TrainConfig(batch_size=128, seed=0)
        splits = load_splits(Path(tmp) / "store", cfg)
    shipped = load_checkpoint(pretrained_path())
    torch.manual_seed(0)
    model = RetrievalVAE(shipped.config).to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 5e-4)
    bf16 = use_bf16(device, "auto")
    n = splits.train.shape[0]
    perm = epoch_permutation(0, 0, n)
    n_batches = n // 128
    print(f"data: {n} train phrases of {len(files)} songs, {n_batches} batches of 128 (song pairs); "
          f"precision {'bf16 autocast' if bf16 else 'fp32'}; {args.steps} steps per stretch, median of 3")

    def inside(count: int, start: int) -> None:
        for i in range(count):
            b = (start + i) % n_batches
            torch.manual_seed(batch_seed(0, 0, b))
            batch = next(epoch_batches(_NoViews(model), splits, perm, 128, 0, 0, b, b + 1))
            _step(model, optimizer, unpack_rows(batch.packed, device), device, bf16)

    def loader(threads: int):
        def run(count: int, start: int) -> None:
            first = start % max(1, n_batches - count)
            for batch in epoch_batches(model, splits, perm, 128, 0, 0, first, first + count, threads=threads, pin=device.type == "cuda"):
                torch.manual_seed(batch_seed(0, 0, batch.number))
                _step(model, optimizer, unpack_rows(batch.packed, device), device, bf16, batch.view.to(device, non_blocking=True))
        return run

    fixed = next(epoch_batches(model, splits, perm, 128, 0, 0, 0, 1))
    fx, fv = unpack_rows(fixed.packed, device), fixed.view.to(device)

    def device_only(count: int, start: int) -> None:
        for _ in range(count):
            _step(model, optimizer, fx, device, bf16, fv)

    rows = [("view in the loss (before)", inside)]
    rows += [(f"loader, {t} thread{'s' if t != 1 else ''}", loader(t)) for t in map(int, args.threads.split(","))]
    rows.append(("device only (one batch reused)", device_only))
    rows.append(("view in the loss, again", inside))
    results = []
    for name, fn in rows:
        fn(5, 0)  # warm-up
        _sync(device)
        rates = []
        for k in range(3):
            t0 = time.perf_counter()
            fn(args.steps, (k + 1) * args.steps)
            _sync(device)
            rates.append(args.steps * 128 / (time.perf_counter() - t0))
        results.append((name, statistics.median(rates)))
    base = results[0][1]
    print()
    print(f"| {args.device}: how the view is built | samples/s | vs before |")
    print("|---|---:|---:|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")


class _NoViews:
    """The model as the loader sees it with views switched off (the loss then builds its own)."""

    def __init__(self, model: RetrievalVAE) -> None:
        self.wants_song_pairs, self.wants_views = model.wants_song_pairs, False


if __name__ == "__main__":
    main()
