"""An index is a folder of immutable generations plus a manifest naming the current one.

::

    INDEX/
      MANIFEST.json        {"format": "midivae-index", "format_version": 1, "generation": "gen-000004"}
      gen-000004/          catalogue.sqlite, phrases/, songs/   (never modified once published)
      gen-000003/          the previous generation, kept for readers that opened it a moment ago
      .tmp-gen-*/          a writer's work in progress (a killed writer leaves one; the next removes it)
      .lock                writers hold an flock on it, one at a time

A writer builds the whole next generation in a temporary folder, fsyncs every file, renames the
folder into place and only then replaces the manifest atomically (temp file, fsync, rename).
Killing it at any instant leaves the manifest pointing at a complete generation, and a reader
never sees half a write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from midivae.errors import VectorIndexError
from midivae.io.atomic import atomic_write_text, fsync_dir

MANIFEST = "MANIFEST.json"
FORMAT = "midivae-index"
FORMAT_VERSION = 1
_GEN = re.compile(r"^gen-(\d{6,})$")
KEEP_GENERATIONS = 2


def is_index(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: Path) -> dict:
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        if not path.exists():
            raise VectorIndexError(f"{path}: no such index")
        raise VectorIndexError(f"{path}: not a midivae index (no {MANIFEST})")
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise VectorIndexError(f"{path}: unreadable manifest ({exc})") from None
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise VectorIndexError(
            f"{path}: index format {data.get('format')!r} v{data.get('format_version')} is not supported "
            f"(expected {FORMAT!r} v{FORMAT_VERSION})")
    if not _GEN.match(str(data.get("generation", ""))):
        raise VectorIndexError(f"{path}: manifest names no generation")
    return data


def current_generation(path: Path) -> Path:
    return Path(path) / read_manifest(path)["generation"]


def _generations(path: Path) -> list[tuple[int, Path]]:
    found = []
    for child in path.iterdir():
        m = _GEN.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    return sorted(found)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Exclusive writer lock (released by the kernel if the writer dies)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def new_generation(path: Path) -> Iterator[Path]:
    """Yield an empty folder for the next generation; publish it if the block succeeds.

    Must be used under :func:`writer_lock`. On an exception the folder is discarded and the
    manifest is untouched.
    """
    path = Path(path)
    for stale in path.glob(".tmp-gen-*"):  # left by a killed writer (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    gens = _generations(path)
    number = gens[-1][0] + 1 if gens else 1
    name = f"gen-{number:06d}"
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=path))
    try:
        yield work
        os.chmod(work, 0o755)  # mkdtemp makes it private; an index is shared like any folder
        _fsync_tree(work)
        os.replace(work, path / name)
        fsync_dir(path)
        atomic_write_text(path / MANIFEST, json.dumps(
            {"format": FORMAT, "format_version": FORMAT_VERSION, "generation": name}, indent=2) + "\n")
        os.chmod(path / MANIFEST, 0o644)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _collect(path, keep=name)


def _collect(path: Path, keep: str) -> None:
    """Delete generations older than the newest KEEP_GENERATIONS (never the current one)."""
    gens = _generations(path)
    for _, gen in gens[:-KEEP_GENERATIONS]:
        if gen.name != keep:
            shutil.rmtree(gen, ignore_errors=True)
