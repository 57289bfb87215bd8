"""Evaluation: the original protocol and real retrieval tasks, for the model and baselines.

Every task takes an embedding function (``embed(phrases) -> (n, d)`` plus a distance, or an
:class:`Embedding`) and a list of songs (:class:`SongPhrases`, or ``(id, phrases)`` pairs);
:func:`run_evaluation` runs them all and writes the report.
"""

from midivae.evaluate.data import SongPhrases, load_eval_data, load_store_split
from midivae.evaluate.embedding import Embedding
from midivae.evaluate.run import EvalConfig, run_evaluation
from midivae.evaluate.tasks import (
    cost,
    excerpt_retrieval,
    genre_consistency,
    original_protocol,
    reconstruction,
    robustness,
    version_identification,
)

__all__ = [
    "Embedding",
    "EvalConfig",
    "SongPhrases",
    "cost",
    "excerpt_retrieval",
    "genre_consistency",
    "load_eval_data",
    "load_store_split",
    "original_protocol",
    "reconstruction",
    "robustness",
    "run_evaluation",
    "version_identification",
]
