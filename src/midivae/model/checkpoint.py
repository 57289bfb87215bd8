"""Checkpoints: a directory a model is rebuilt from alone, written atomically.

Layout of a checkpoint directory::

    config.json              format, architecture name + its Config, TrainConfig, epoch, metrics
    weights.safetensors      model parameters and buffers (no pickle anywhere)
    thresholds.json          per-track probability thresholds learnt on validation (optional)
    optimizer.safetensors    optimizer tensors, for --resume (optional)
    trainer_state.json       optimizer hyper-parameters, position in the run, metric history (optional)

The whole directory is first written beside its final place, then swapped in with one atomic
``renameat2(RENAME_EXCHANGE)`` (or two renames where that is unavailable), so a crash leaves the
previous checkpoint, never half of a new one. ``checkpoint_id`` is the short sha256 of
``weights.safetensors``; the index uses it to refuse vectors made by another checkpoint.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from midivae.constants import N_TRACKS, TRACK_NAMES
from midivae.errors import CheckpointError
from midivae.io.atomic import fsync_dir
from midivae.model.base import ARCHITECTURES, PhraseVAE
from midivae.model.config import TrainConfig, config_from_dict, config_to_dict

FORMAT = "midivae-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
THRESHOLDS_FILE = "thresholds.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
ID_LENGTH = 16
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class CheckpointInfo:
    """What config.json says, without building the model."""

    path: Path
    arch: str
    model_config: dict[str, Any]
    train_config: TrainConfig | None
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)


def file_id(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:ID_LENGTH]


def checkpoint_id(path: str | os.PathLike[str]) -> str:
    """The short sha256 of a checkpoint's weights file."""
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_FILE}: not a midivae checkpoint")
    return file_id(weights)


# --- writing ---------------------------------------------------------------------------------

def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # contiguous CPU copies in the standard layout (channels-last weights are saved as NCHW).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON (the rest)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # Give per-parameter state its parameter's memory layout (e.g. channels-last): fused
    # optimizers walk parameter and state memory together and assume equal strides.
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _install_dir(tmp: Path, final: Path) -> None:
    if not final.exists():
        os.rename(tmp, final)
    elif _exchange(tmp, final):
        shutil.rmtree(tmp)
    else:  # two renames: a crash between them leaves ``final`` missing but ``.old`` complete
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    fsync_dir(final.parent)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: PhraseVAE,
    train_config: TrainConfig | None = None,
    *,
    epoch: int = 0,
    metrics: dict[str, Any] | None = None,
    thresholds: list[float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
) -> str:
    """Write a checkpoint directory atomically and return its checkpoint id.

    ``weights_dtype`` (e.g. torch.float16) stores floating weights at lower precision, to ship a
    smaller file; loading casts them back to float32.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        tensors = _state_tensors(model)
        if weights_dtype is not None:
            tensors = {k: v.to(weights_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        # one metadata key only: safetensors writes a map's keys in no fixed order, and the
        # checkpoint id (the file's hash) must depend on the weights alone.
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "version": VERSION,
            "arch": model.name,
            "model_config": config_to_dict(model.config),
            "train_config": config_to_dict(train_config) if train_config is not None else None,
            "epoch": int(epoch),
            "metrics": metrics or {},
            "weights_dtype": str(weights_dtype or "torch.float32").removeprefix("torch."),
        }
        if thresholds is not None:
            _write_json(tmp / THRESHOLDS_FILE, {"tracks": list(TRACK_NAMES), "thresholds": [float(t) for t in thresholds]})
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_tensors(optimizer)
            save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
            trainer_state = {**(trainer_state or {}), "optimizer": opt_meta}
        if trainer_state is not None:
            _write_json(tmp / STATE_FILE, trainer_state)
        _write_json(tmp / CONFIG_FILE, config)  # last: its presence marks a complete directory
        for child in tmp.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        ckpt_id = file_id(tmp / WEIGHTS_FILE)
        _install_dir(tmp, final)
        return ckpt_id
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- reading ---------------------------------------------------------------------------------

def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        old = path.with_name(f".{path.name}.old")  # a crash between two renames (see _install_dir)
        if (old / CONFIG_FILE).is_file():
            path, cfg_path = old, old / CONFIG_FILE
        elif path.is_dir():
            raise CheckpointError(f"{path}: no {CONFIG_FILE}: not a midivae checkpoint directory")
        elif path.exists():
            raise CheckpointError(f"{path}: a file; a checkpoint is a directory (its {CONFIG_FILE} beside its weights)")
        else:
            raise CheckpointError(f"{path}: checkpoint directory does not exist")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: unreadable: {exc}") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a midivae checkpoint (format {config.get('format')!r})")
    if config.get("version") != VERSION:
        raise CheckpointError(f"{cfg_path}: checkpoint version {config.get('version')} (this midivae reads {VERSION})")
    train_cfg = config.get("train_config")
    return CheckpointInfo(
        path=path,
        arch=config["arch"],
        model_config=config["model_config"],
        train_config=config_from_dict(TrainConfig, train_cfg) if train_cfg is not None else None,
        epoch=int(config.get("epoch", 0)),
        metrics=config.get("metrics", {}),
    )


def architecture(name: str) -> type[PhraseVAE]:
    import midivae.model  # noqa: F401  (registers the built-in architectures)

    cls = ARCHITECTURES.get(name)
    if cls is None:
        known = ", ".join(sorted(ARCHITECTURES)) or "none"
        raise CheckpointError(f"unknown architecture {name!r} (known: {known})")
    return cls


def read_thresholds(path: str | os.PathLike[str]) -> np.ndarray:
    """Per-track thresholds of a checkpoint (0.5 for each track where none were learnt)."""
    file = Path(path) / THRESHOLDS_FILE
    if not file.is_file():
        return np.full(N_TRACKS, DEFAULT_THRESHOLD, dtype=np.float32)
    try:
        values = json.loads(file.read_text(encoding="utf-8"))["thresholds"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable: {exc}") from exc
    if len(values) != N_TRACKS:
        raise CheckpointError(f"{file}: {len(values)} thresholds for {N_TRACKS} tracks")
    return np.asarray(values, dtype=np.float32)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> PhraseVAE:
    """Rebuild a model from its checkpoint directory alone, in eval mode.

    The model gets ``checkpoint_id``, ``thresholds`` (per track, numpy) and ``train_config``.
    """
    info = read_info(path)
    cls = architecture(info.arch)
    model = cls(config_from_dict(cls.Config, info.model_config))
    weights = info.path / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{weights}: unreadable weights: {exc}") from exc
    reference = model.state_dict()
    tensors = {k: v.to(reference[k].dtype) if k in reference else v for k, v in tensors.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not fit architecture {info.arch!r}: {exc}") from exc
    model.checkpoint_id = file_id(weights)
    model.thresholds = read_thresholds(info.path)
    model.train_config = info.train_config
    model.checkpoint_path = info.path
    return model.to(device).eval()


def load_training_state(
    path: str | os.PathLike[str], optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore optimizer state in place and return the trainer state saved beside it."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(path / OPTIMIZER_FILE))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: cannot resume: training state unreadable: {exc}") from exc
    if "optimizer" not in state:
        raise CheckpointError(f"{path}: cannot resume: no optimizer state saved")
    try:
        restore_optimizer(optimizer, tensors, state.pop("optimizer"))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot resume: optimizer state does not fit: {exc}") from exc
    return state
