"""Evaluation: the original protocol and real retrieval tasks, for the model and baselines.

Every task takes an embedding function (``embed(phrases) -> (n, d)`` plus a distance, or an
:class:`Embedding`) and a list of songs (:class:`SongPhrases`, or ``(id, phrases)`` pairs);
:func:`run_evaluation` runs them all and writes the report.

The names below load on first use (PEP 562), so that a command which only needs a constant of
one submodule (the CLI's option choices) does not import scipy and every task.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "SongPhrases": "data",
    "load_eval_data": "data",
    "load_store_split": "data",
    "Embedding": "embedding",
    "EvalConfig": "run",
    "run_evaluation": "run",
    "cost": "tasks",
    "excerpt_retrieval": "tasks",
    "genre_consistency": "tasks",
    "original_protocol": "tasks",
    "reconstruction": "tasks",
    "robustness": "tasks",
    "version_identification": "tasks",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
