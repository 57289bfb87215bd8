"""A writer killed at random points leaves a usable index; readers never see half a write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from midivae.index import LatentIndex, add_to_index, build_index, remove_from_index
from midivae.index.search import query_from_song, rank_songs

WRITER = """
import sys
from midivae.errors import NotFoundError
from midivae.index import BarProfileEncoder, add_to_index, remove_from_index
index, src, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
enc = BarProfileEncoder({dim}, seed=0)
print("ready", flush=True)
while True:
    try:
        remove_from_index(index, ids)
    except NotFoundError:  # an earlier writer was killed between its remove and its add
        pass
    add_to_index(index, [src], enc)
"""


def check_index(path: Path, all_songs: set[str], moving: set[str]) -> None:
    with LatentIndex.open(path) as ix:
        songs = set(ix.catalogue.song_ids())
        assert songs in (all_songs, all_songs - moving)
        assert len(ix.phrases) == ix.catalogue.n_phrases() and len(ix.songs) == len(songs)
        query = sorted(all_songs - moving)[0]
        hits = rank_songs(ix, query_from_song(ix, query, None, None, False), k=5)
        assert len(hits) == 5 and all(h.song_id in songs for h in hits)


def test_killed_writer_leaves_previous_index_usable(song_dir, encoder, tmp_path):
    names = sorted(p.stem for p in song_dir.glob("*.npz"))
    moving = names[:2]
    src = tmp_path / "moving"
    src.mkdir()
    for n in moving:
        shutil.copy(song_dir / f"{n}.npz", src / f"{n}.npz")
    index = tmp_path / "ix"
    build_index([song_dir], index, encoder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = WRITER.format(dim=encoder.latent_dim)
    rng = np.random.default_rng(1)
    generations_seen = set()
    killed_mid_write = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script, str(index), str(src), *moving],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + rng.uniform(0.2, 1.5)
        while time.monotonic() < deadline:  # a reader running beside the writer
            check_index(index, set(names), set(moving))
            with LatentIndex.open(index) as ix:
                generations_seen.add(ix.generation.name)
        assert proc.poll() is None, "the writer died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_write += bool(list(index.glob(".tmp-gen-*")))
        check_index(index, set(names), set(moving))
    assert len(generations_seen) > 3  # the writer really was publishing while we read
    assert killed_mid_write >= 1  # at least one kill left a half-written generation behind
    # the next writers clean what killed writers left behind
    add_to_index(index, [src], encoder)
    remove_from_index(index, moving[:1])
    assert not list(index.glob(".tmp-gen-*"))
    assert len([p for p in index.glob("gen-*")]) <= 2
    with LatentIndex.open(index) as ix:
        assert moving[0] not in ix.catalogue.song_ids()


def test_failed_write_publishes_nothing(song_dir, encoder, tmp_path):
    from midivae.index.latent_index import IndexWriter

    build_index([song_dir], tmp_path / "ix", encoder)
    first = sorted(p.stem for p in song_dir.glob("*.npz"))[0]
    try:
        with IndexWriter.open(tmp_path / "ix") as w:
            w.remove_song(first)
            raise RuntimeError("crash inside the writer")
    except RuntimeError:
        pass
    with LatentIndex.open(tmp_path / "ix") as ix:
        assert ix.generation.name == "gen-000001" and first in ix.catalogue.song_ids()
    assert not list((tmp_path / "ix").glob(".tmp-gen-*"))
