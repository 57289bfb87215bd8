"""Training and encoding speed of the reference VAE on this CPU, next to a plain implementation.

Usage:  python benchmarks/train_speed.py [--threads 2] [--steps 8] [--songs 40]

Rows, all in one run on the same real LPD-5 phrases:
* plain: the same model written the straightforward way (fp32, NCHW tensors, the library BCE,
  default Adam, bool -> float per batch), a naive Python loop;
* midivae: the trainer's own step (midivae.model.train: bit-packed rows unpacked by numpy on the CPU,
  channels-last, fused BCE, fused Adam), at two batch sizes;
* encode: phrases/s of midivae.load_model(...).encode (numpy in/out) and of the plain model;
* bf16: the trainer step and encoding under bf16 autocast, measured where the CPU has native bf16
  (avx512_bf16 / amx_bf16; `--bf16 on` forces it elsewhere, where it is emulated and slow);
* shipped: the shipped `retrieval` model's training step and encoding (what `midivae train
  --arch retrieval` and `midivae index build` run), for scale.

Every row runs twice in the same run: with glibc's default allocation (each large tensor a fresh
mmap, page-faulted in every step), then after `midivae.memory.keep_freed_memory()` (freed memory
reused, what the trainer runs with).

The machine is shared, so besides wall-clock samples/s the table gives CPU-time-normalised
samples/s (samples / (process CPU seconds / threads)): what the same work would reach with the
threads to itself. A matmul measures the fp32 ceiling in the same run; FLOPs / that ceiling is
the best any fp32 implementation of this model could do here.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from midivae.constants import N_PITCHES, N_TRACKS, PHRASE_SHAPE, STEPS_PER_PHRASE
from midivae.data.store import pack
from midivae.model.reference import ReferenceConfig, ReferenceVAE
from midivae.data.augment import cells_from_packed
from midivae.memory import keep_freed_memory
from midivae.model.api import Model, pretrained_path
from midivae.model.checkpoint import load_checkpoint
from midivae.model.train import autocast, cpu_flags, make_optimizer, unpack_rows

REPO = Path(__file__).resolve().parents[1]


class PlainVAE(nn.Module):
    """The reference architecture, written plainly (no layout tricks, library loss)."""

    def __init__(self, c: ReferenceConfig) -> None:
        super().__init__()
        self.c = c
        self.conv1 = nn.Conv2d(N_TRACKS, c.channels1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c.channels1, c.channels2, 3, stride=2, padding=1)
        self.flat = c.channels2 * 48 * 21
        self.mu = nn.Linear(self.flat, c.latent_dim)
        self.logvar = nn.Linear(self.flat, c.latent_dim)
        self.fc = nn.Linear(c.latent_dim, self.flat)
        self.deconv1 = nn.ConvTranspose2d(c.channels2, c.channels1, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = nn.ConvTranspose2d(c.channels1, N_TRACKS, 3, stride=2, padding=1, output_padding=1)

    def encode(self, x):
        img = x.reshape(-1, STEPS_PER_PHRASE, N_PITCHES, N_TRACKS).permute(0, 3, 1, 2).contiguous()
        h = F.relu(self.conv2(F.relu(self.conv1(img)))).flatten(1)
        return self.mu(h), self.logvar(h)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        h = F.relu(self.fc(z)).view(-1, self.c.channels2, 48, 21)
        logits = self.deconv2(F.relu(self.deconv1(h)))
        recon = F.binary_cross_entropy_with_logits(logits, x.reshape(-1, STEPS_PER_PHRASE, N_PITCHES, N_TRACKS).permute(0, 3, 1, 2), reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (recon + kl) / x.shape[0]


def real_packed(n_songs: int) -> np.ndarray:
    from midivae.model import read_phrases

    data = Path(os.environ.get("MIDIVAE_DATA", REPO.parent / "shared" / "data"))
    files = sorted((data / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:n_songs]
    if not files:
        raise SystemExit(f"no LPD-5 songs under {data} (set MIDIVAE_DATA)")
    return pack(np.concatenate([read_phrases(f) for f in files]))


def timed(fn, samples_per_call: int, calls: int, threads: int) -> tuple[float, float]:
    fn()  # warm-up (allocations, oneDNN primitive creation)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = samples_per_call * calls
    return n / wall, n / (cpu / threads)


def matmul_gflops(threads: int) -> tuple[float, float]:
    a, b = torch.randn(256, 32256), torch.randn(32256, 256)
    flop = 2 * 256 * 32256 * 256
    wall_rate, cpu_rate = timed(lambda: a @ b, 1, 10, threads)
    return wall_rate * flop / 1e9, cpu_rate * flop / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="timed optimizer steps per row")
    ap.add_argument("--songs", type=int, default=40, help="LPD-5 songs read for real phrases")
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bf16 autocast rows: auto = only where the CPU has native bf16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("flags: " + ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")))
    packed = real_packed(args.songs)
    rng = np.random.default_rng(0)
    print(f"data: {packed.shape[0]} real phrases from {args.songs} LPD-5 songs, "
          f"{np.unpackbits(packed).mean() * 100:.2f}% of cells on")

    config = ReferenceConfig()
    ref = ReferenceVAE(config)
    train_flops = ref.train_flops_per_sample()
    gf_wall, gf_cpu = matmul_gflops(args.threads)
    print(f"reference model: latent {config.latent_dim}, {sum(p.numel() for p in ref.parameters()):,} parameters, "
          f"{ref.flops_per_sample() / 1e6:.1f} MFLOP forward, {train_flops / 1e6:.1f} MFLOP per training sample")
    print(f"fp32 matmul (256x32256x256): {gf_wall:.0f} GFLOP/s wall, {gf_cpu:.0f} GFLOP/s CPU-normalised "
          f"-> fp32 bound for this model ~{gf_cpu * 1e9 / train_flops:.0f} training samples/s")
    rows: list[tuple[str, str, Callable[[], object], int, int]] = []  # name, task, call, samples per call, calls

    def batch_indices(bs):
        return np.sort(rng.choice(packed.shape[0], size=bs, replace=packed.shape[0] < bs))

    # plain
    for bs in (64,):
        torch.manual_seed(0)
        plain = PlainVAE(config)
        opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

        def plain_step(plain=plain, opt=opt, bs=bs):
            x = torch.from_numpy(np.unpackbits(packed[batch_indices(bs)], axis=1).astype(bool)).float()
            opt.zero_grad()
            plain(x.reshape(bs, *PHRASE_SHAPE)).backward()
            opt.step()

        rows.append((f"plain (fp32, NCHW, library BCE, Adam), batch {bs}", "train", plain_step, bs, args.steps))
    # midivae trainer step (fp32, and bf16 autocast where the CPU has it natively)
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    bf16_modes = [False] + ([True] if args.bf16 == "on" or (args.bf16 == "auto" and native_bf16) else [])
    cpu = torch.device("cpu")
    for bf16 in bf16_modes:
        for bs in (128, 256):
            torch.manual_seed(0)
            model = ReferenceVAE(config).to(memory_format=torch.channels_last)
            opt = make_optimizer(model, 1e-3)

            def step(model=model, opt=opt, bs=bs, bf16=bf16):
                x = unpack_rows(packed[batch_indices(bs)], cpu)
                opt.zero_grad(set_to_none=True)
                with autocast(cpu, bf16):
                    loss = model.loss(x, 1.0)["loss"]
                loss.backward()
                opt.step()

            precision = "bf16 autocast" if bf16 else "fp32"
            rows.append((f"midivae trainer step ({precision}, channels-last, fused BCE + Adam), batch {bs}", "train",
                         step, bs, max(2, args.steps * 64 // bs)))
    # encoding
    phrases = np.unpackbits(packed[batch_indices(1024)], axis=1).view(bool).reshape(-1, *PHRASE_SHAPE)
    api = Model(ReferenceVAE(config))
    rows.append(("midivae Model.encode (numpy bool in, float32 out), batch 256", "encode",
                 lambda: api.encode(phrases), len(phrases), 2))
    rows.append(("midivae Model.encode_mean (posterior mean only, for the index), batch 256", "encode",
                 lambda: api.encode_mean(phrases), len(phrases), 2))
    plain_net = PlainVAE(config).eval()

    def plain_encode():
        with torch.no_grad():
            for i in range(0, len(phrases), 64):
                plain_net.encode(torch.from_numpy(phrases[i : i + 64]).float())

    rows.append(("plain encode (no_grad, NCHW), batch 64", "encode", plain_encode, len(phrases), 2))
    if len(bf16_modes) > 1:
        def bf16_encode():
            with autocast(cpu, True):
                api.encode_mean(phrases)

        rows.append(("midivae Model.encode_mean under bf16 autocast, batch 256", "encode", bf16_encode, len(phrases), 2))
    if native_bf16:
        print("bf16: this CPU has native bf16; `--precision auto` trains under bf16 autocast")
    elif len(bf16_modes) == 1:
        print("bf16 autocast: not measured, off by default: no avx512_bf16/amx_bf16 on this CPU (emulated, ~10x slower)")
    ref_rows = len(rows)
    # the shipped retrieval model, for scale (not the reference design)
    shipped = Model(load_checkpoint(pretrained_path()))
    net = shipped.vae
    ropt = make_optimizer(net, 1e-3)
    view_rng = np.random.default_rng(0)

    def retrieval_step():  # as the trainer runs it: bytes in, the view built from the packed rows
        net.train()
        batch = packed[batch_indices(128)]
        x = unpack_rows(batch, cpu, torch.uint8)
        view = net.make_view(cells_from_packed(batch), view_rng)
        ropt.zero_grad(set_to_none=True)
        net.loss(x, 0.1, view=view)["loss"].backward()
        ropt.step()

    def shipped_encode():
        net.eval()
        shipped.encode_mean(phrases)

    rows.append((f"shipped `retrieval` model ({net.checkpoint_id}) trainer step, batch 128", "train (shipped)",
                 retrieval_step, 128, max(2, args.steps // 2)))
    rows.append(("shipped `retrieval` model Model.encode_mean, batch 256", "encode (shipped)", shipped_encode, len(phrases), 2))

    # every row twice: with glibc's default allocation, then with freed memory kept in the process
    default = [timed(call, samples, calls, args.threads) for _, _, call, samples, calls in rows]
    kept_applied = keep_freed_memory()
    kept = [timed(call, samples, calls, args.threads) for _, _, call, samples, calls in rows]
    kept_name = "freed memory kept" if kept_applied else "freed memory kept (not available here: same as default)"

    print()
    print("samples/s, CPU-normalised (wall-clock in brackets)")
    print()
    print(f"| implementation | task | default malloc | {kept_name} | kept / default |")
    print("|---|---|---:|---:|---:|")
    for (name, task, *_), (dw, dc), (kw, kc) in zip(rows, default, kept):
        print(f"| {name} | {task} | {dc:,.0f} ({dw:,.0f}) | {kc:,.0f} ({kw:,.0f}) | {kc / dc:.2f}x |")
    for label, results in (("default malloc", default), (kept_name, kept)):
        plain_cpu = results[0][1]
        ours = [(r[1], row[1]) for r, row in zip(results[:ref_rows], rows) if row[0].startswith("midivae")]
        best_cpu = max(rate for rate, task in ours if task == "train")
        best_encode = max(rate for rate, task in ours if task == "encode")
        print(f"{label}: reference trainer / plain {best_cpu / plain_cpu:.2f}x; best reference training "
              f"{best_cpu:,.0f} samples/s, encoding {best_encode:,.0f} phrases/s")
    print("targets: >= 1,000 training samples/s, >= 5,000 encoded phrases/s")


if __name__ == "__main__":
    main()
