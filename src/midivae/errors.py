"""One exception hierarchy for every domain failure; the CLI prints these as one line."""

from __future__ import annotations


class MidiVaeError(Exception):
    """Base of every error midivae raises on purpose."""


class InvalidInputError(MidiVaeError):
    """An input file is corrupt, empty, truncated or not in the expected format."""

    def __init__(self, path: object, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class UnsupportedMeterError(InvalidInputError):
    """A file (or all of it) is not in 4/4 and meters other than 4/4 were not allowed."""


class StoreError(MidiVaeError):
    """A phrase store is missing, of another format version, or inconsistent."""


class CheckpointError(MidiVaeError):
    """A model checkpoint is missing or cannot be rebuilt."""


class VectorIndexError(MidiVaeError):
    """A vector index is missing, corrupt or cannot answer the request."""


class IndexMismatchError(VectorIndexError):
    """Vectors from one checkpoint were offered to an index built by another."""


class NotFoundError(MidiVaeError):
    """A named thing (song id, file, run) does not exist."""
