"""The numpy-facing model API: load a checkpoint, encode phrases, decode and sample latents.

Everything here takes and returns numpy arrays (phrases as bool ``(n, 4, 48, 84, 5)``), works
in batches under ``torch.inference_mode`` and never changes the model's weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from midivae.constants import BARS_PER_PHRASE, MIDI_SUFFIXES, N_TRACKS, PHRASE_SHAPE
from midivae.errors import CheckpointError, InvalidInputError
from midivae.model.base import PhraseVAE
from midivae.song import phrase_tempi
from midivae.model.checkpoint import CONFIG_FILE, file_id, load_checkpoint
from midivae.model.search_head import SEARCH_FILE, SearchHead, identity_head, load_search_head

#: The shipped pretrained model: a checkpoint directory inside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"



class Model:
    """A loaded phrase VAE with numpy in and out.

    ``encode`` gives the posterior ``(mu, logvar)``; ``decode`` and ``sample`` give cell
    probabilities; ``threshold`` turns probabilities into notes with the per-track thresholds
    learnt on validation; ``bernoulli`` draws notes instead.
    """

    def __init__(self, vae: PhraseVAE, batch_size: int = 256, device: str | torch.device = "cpu") -> None:
        # channels-last: the phrase layout already is, so convolutions run without a copy
        self.vae = vae.eval().to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._search_head: SearchHead | None = None
        self._search_id: str | None = None
        thresholds = getattr(vae, "thresholds", None)
        self.thresholds = (
            np.asarray(thresholds, dtype=np.float32) if thresholds is not None else np.full(N_TRACKS, 0.5, np.float32)
        )

    # -- identity ---------------------------------------------------------------------------
    @property
    def checkpoint_id(self) -> str:
        return self.vae.checkpoint_id or ""

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    @property
    def arch(self) -> str:
        return self.vae.name

    @property
    def path(self) -> Path | None:
        return getattr(self.vae, "checkpoint_path", None)

    def __repr__(self) -> str:
        return f"Model(arch={self.arch!r}, latent_dim={self.latent_dim}, checkpoint_id={self.checkpoint_id!r})"

    # -- encoding ---------------------------------------------------------------------------
    def _phrases_tensor(self, phrases: np.ndarray) -> torch.Tensor:
        arr = np.asarray(phrases)
        if arr.ndim == len(PHRASE_SHAPE):
            arr = arr[None]
        if arr.shape[1:] != PHRASE_SHAPE:
            raise ValueError(f"phrases must have shape (n, {', '.join(map(str, PHRASE_SHAPE))}), got {arr.shape}")
        if arr.dtype == bool:
            arr = arr.view(np.uint8)
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        return x if self.vae.encodes_uint8 and x.dtype == torch.uint8 else x.float()

    def _batches(self, phrases: np.ndarray) -> Iterator[torch.Tensor]:
        """The phrases (one, or ``(n, ...)``) as model inputs, ``batch_size`` at a time."""
        arr = np.asarray(phrases)
        if arr.ndim == len(PHRASE_SHAPE):
            arr = arr[None]
        for start in range(0, arr.shape[0], self.batch_size):
            yield self._phrases_tensor(arr[start : start + self.batch_size])

    @staticmethod
    def _numpy(t: Tensor) -> np.ndarray:
        return t.float().cpu().numpy()

    @torch.inference_mode()
    def encode(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-variance, float32 ``(n, latent_dim)`` each."""
        parts = [tuple(map(self._numpy, self.vae.encode(x))) for x in self._batches(phrases)]
        if not parts:
            return np.zeros((0, self.latent_dim), np.float32), np.zeros((0, self.latent_dim), np.float32)
        return np.concatenate([m for m, _ in parts]), np.concatenate([lv for _, lv in parts])

    @torch.inference_mode()
    def encode_mean(self, phrases: np.ndarray) -> np.ndarray:
        """Posterior means alone, float32 ``(n, latent_dim)``: equal to ``encode(phrases)[0]``,
        cheaper where the architecture can skip the log-variance (what an index needs)."""
        parts = [self._numpy(self.vae.encode_mean(x)) for x in self._batches(phrases)]
        return np.concatenate(parts) if parts else np.zeros((0, self.latent_dim), np.float32)

    @property
    def search_head(self) -> SearchHead:
        """How this checkpoint's encodings become search vectors (``search.safetensors`` beside
        the weights; without it, the plain scan of unit posterior means)."""
        if self._search_head is None:
            self._search_head = load_search_head(self.path, self.latent_dim) if self.path else identity_head(self.latent_dim)
        return self._search_head

    @property
    def search_id(self) -> str:
        """Short hash of the checkpoint's search head file ("" without one): with the checkpoint id,
        what an index checks before it takes this model's vectors."""
        if self._search_id is None:
            path = self.path / SEARCH_FILE if self.path else None
            self._search_id = file_id(path) if path is not None and path.is_file() else ""
        return self._search_id

    @property
    def search_dim(self) -> int:
        head = self.search_head
        return head.content_dims + (self.vae.bar_part_dim if head.bar_weight else 0) + head.fingerprint_hashes

    @torch.inference_mode()
    def encode_search(self, phrases: np.ndarray, tempo: np.ndarray | float | None = None) -> np.ndarray:
        """Search vectors float32 ``(n, search_dim)`` (see :mod:`midivae.model.search_head`);
        ``tempo``: the phrases' song tempo in BPM (one per phrase or one for all; None: unknown),
        which the search head's song projection reads where it was fitted with tempi."""
        head = self.search_head
        arr = np.asarray(phrases)
        if arr.ndim == len(PHRASE_SHAPE):
            arr = arr[None]
        bpm = phrase_tempi(tempo, arr.shape[0])
        parts = []
        for start, x in zip(range(0, arr.shape[0], self.batch_size), self._batches(arr)):
            mu, _, bars = self.vae.encode_with_bars(x) if head.needs_bars else (self.vae.encode_mean(x), None, None)
            end = start + self.batch_size
            parts.append(head.search_vectors(self._numpy(mu), None if bars is None else self._numpy(bars),
                                             arr[start:end], bpm[start:end]))
        return np.concatenate(parts) if parts else np.zeros((0, self.search_dim), np.float32)

    @torch.inference_mode()
    def encode_with_bars(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``encode``'s posterior and each bar's share of the content part of its mean, float32
        ``(n, 4, k)`` (None where the architecture has none; see ``PhraseVAE.encode_with_bars``),
        from one encoder pass."""
        parts = [self.vae.encode_with_bars(x) for x in self._batches(phrases)]
        k = self.vae.bar_part_dim // BARS_PER_PHRASE
        if not parts:
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy(), np.zeros((0, BARS_PER_PHRASE, k), np.float32) if k else None
        mu, logvar = (np.concatenate([self._numpy(p[i]) for p in parts]) for i in (0, 1))
        bars = np.concatenate([self._numpy(p[2]) for p in parts]) if parts[0][2] is not None else None
        return mu, logvar, bars

    def encode_sample(self, phrases: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Sampled latents z = mu + sigma * eps (the original protocol's encoding)."""
        mu, logvar = self.encode(phrases)
        eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(np.float32)
        return mu + np.exp(0.5 * logvar) * eps

    # -- decoding ---------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Cell probabilities, float32 ``(n, 4, 48, 84, 5)``."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have {self.latent_dim} dims, got shape {z.shape}")
        out = np.empty((z.shape[0], *PHRASE_SHAPE), dtype=np.float32)
        for start in range(0, z.shape[0], self.batch_size):
            zt = torch.from_numpy(np.ascontiguousarray(z[start : start + self.batch_size])).to(self.device)
            out[start : start + zt.shape[0]] = torch.sigmoid(self.vae.decode(zt).float()).cpu().numpy()
        return out

    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None) -> np.ndarray:
        """Probabilities of ``n`` phrases decoded from z ~ N(0, temperature^2 I)."""
        z = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        return self.decode(z * np.float32(temperature))

    def reconstruct(self, phrases: np.ndarray) -> np.ndarray:
        """Probabilities decoded from the posterior mean of each phrase."""
        return self.decode(self.encode(phrases)[0])

    # -- to notes ---------------------------------------------------------------------------
    def threshold(self, probs: np.ndarray) -> np.ndarray:
        """Bool phrases: a cell is on where its probability reaches its track's threshold."""
        return np.asarray(probs) >= self.thresholds

    @staticmethod
    def bernoulli(probs: np.ndarray, temperature: float = 1.0, seed: int | None = None) -> np.ndarray:
        """Bool phrases drawn cell by cell; ``temperature`` scales the logits (1: as decoded,
        lower: closer to thresholding at 0.5, higher: noisier)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
        if temperature != 1.0:
            logits = np.log(p) - np.log1p(-p)
            p = 1.0 / (1.0 + np.exp(-logits / max(temperature, 1e-6)))
        return np.random.default_rng(seed).random(p.shape) < p


def pretrained_path() -> Path:
    return PRETRAINED_DIR


def resolve_checkpoint_dir(path: str | os.PathLike[str] | None) -> Path:
    """The checkpoint folder meant by ``path``: ``None`` or ``"shipped"`` is the pretrained model,
    a run folder means its ``best/``."""
    if path is None or str(path) == "shipped":
        if not (PRETRAINED_DIR / CONFIG_FILE).is_file():
            raise CheckpointError(
                f"no pretrained model is shipped in {PRETRAINED_DIR} yet: train one with "
                "`midivae train --data STORE --out RUN` and pass its checkpoint (RUN/best)"
            )
        return PRETRAINED_DIR
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() and (path / "best" / CONFIG_FILE).is_file():
        path = path / "best"
    return path


def load_model(
    path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    threads: int | None = None,
) -> Model:
    """Load a checkpoint directory (a training run's ``best/`` or ``last/``, or a run directory,
    whose ``best/`` is taken); ``None`` loads the pretrained model shipped with midivae."""
    path = resolve_checkpoint_dir(path)
    if threads:
        torch.set_num_threads(threads)
    return Model(load_checkpoint(path, device=device), batch_size=batch_size, device=device)


def read_phrases(path: str | os.PathLike[str], allow_any_meter: bool = False) -> np.ndarray:
    """The non-empty 4-bar phrases of a MIDI (.mid/.midi/.kar) or LPD-5 (.npz) file, bool ``(n, 4, 48, 84, 5)``."""
    from midivae.io import read_lpd, read_midi
    from midivae.song import cut_phrases

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        song = read_lpd(path)
    elif suffix in MIDI_SUFFIXES:
        song = read_midi(path, allow_any_meter=allow_any_meter)
    else:
        raise InvalidInputError(path, f"unsupported file type {suffix or '(none)'!r}: expected .npz or {', '.join(MIDI_SUFFIXES)}")
    return cut_phrases(song).phrases
