"""Typed training configuration, and dataclass <-> JSON conversion for every config a checkpoint holds."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from midivae.errors import CheckpointError

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Saved in every checkpoint; ``--resume`` reuses it."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    #: weight of the KL term (after annealing).
    beta: float = 1.0
    #: linear KL warm-up from 0 to ``beta`` over this many optimizer steps (0: no annealing).
    kl_anneal_steps: int = 0
    #: nats per latent dim below which the KL is not penalised (0: off).
    free_bits: float = 0.0
    seed: int = 0
    #: host threads that build the next batches (their augmented views) while the model trains
    #: on this one (-1: none on a CPU, where the cores are busy training; up to 4 on a GPU).
    #: Results do not depend on it.
    loader_threads: int = -1
    #: stop after this many epochs without a better validation loss (0: never stop early).
    patience: int = 5
    #: CPU threads for torch (0: torch's default).
    threads: int = 2
    #: stop (and checkpoint) once this much training time has passed, resumes included (None: no limit).
    max_minutes: float | None = None
    #: validation phrases used each epoch (a fixed, seeded subset of the validation split).
    val_size: int = 2048
    #: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: "auto" (bf16 autocast on CUDA with bf16 or CPUs with avx512_bf16/amx, else fp32), "fp32", "bf16".
    precision: str = "auto"
    #: channels-last memory layout for convolutions (faster with oneDNN on CPU).
    channels_last: bool = True
    #: clip the gradient norm to this value (None: no clipping).
    grad_clip: float | None = None
    #: train on at most this many phrases of the train split (None: all); for quick runs and tests.
    train_limit: int | None = None
    #: start from the weights of this checkpoint (a fresh optimizer; fine-tuning or training on
    #: past a finished run's budget); the checkpoint's id is recorded in ``init_checkpoint_id``.
    init_from: str | None = None
    init_checkpoint_id: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.beta < 0:
            raise ValueError("epochs and batch_size must be >= 1, lr > 0, beta >= 0")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")


#: fields that may change when a run is resumed without changing its random stream.
RESUMABLE_FIELDS = frozenset({"epochs", "patience", "threads", "loader_threads", "max_minutes", "device", "precision"})


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any) -> Any:
    """JSON gives lists for tuples; turn them back where the field is a tuple."""
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
    return value


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass; unknown keys are an error (a checkpoint from newer code)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise CheckpointError(f"{cls.__name__} has no field(s) {sorted(unknown)}: checkpoint from another version?")
    try:
        return cls(**{k: _coerce(v, hints[k]) for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid {cls.__name__}: {exc}") from exc


def parse_value(text: str, annotation: Any) -> Any:
    """Parse a command-line string into a field's type (int, float, bool, str, None, tuples)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if typing.get_origin(annotation) is tuple:
        return tuple(parse_value(part, args[0]) for part in text.split(",") if part)
    if annotation in (int, float, str):
        return annotation(text)
    raise ValueError(f"cannot parse a value of type {annotation}")


def with_overrides(config: T, overrides: dict[str, str]) -> T:
    """A copy of ``config`` with ``key=value`` strings (e.g. from ``--set``) parsed and applied."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for key, text in overrides.items():
        if key not in hints:
            fields = ", ".join(sorted(hints))
            raise ValueError(f"{type(config).__name__} has no option {key!r} (options: {fields})")
        changes[key] = parse_value(text, hints[key])
    return dataclasses.replace(config, **changes)
