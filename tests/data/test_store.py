"""The phrase store and ingest: packing, manifest, splits, duplicates, crash safety, resume."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from midivae.data.ingest import ingest
from midivae.data.store import PACKED_BYTES, PhraseStore, SplitConfig, pack, unpack
from midivae.errors import StoreError

from tests.conftest import random_phrases


def test_pack_unpack_round_trip() -> None:
    phrases = random_phrases(7, seed=1)
    packed = pack(phrases)
    assert packed.shape == (7, PACKED_BYTES) and packed.dtype == np.uint8
    assert np.array_equal(unpack(packed), phrases)


def test_split_is_a_pure_function_of_the_content_hash() -> None:
    cfg = SplitConfig(validation=0.1, test=0.1)
    hashes = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(5000)]
    splits = [cfg.assign(h) for h in hashes]
    assert splits == [cfg.assign(h) for h in hashes]
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["test"] < 0.13


def _lpd_files(data_dir: Path, n: int) -> list[Path]:
    return sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:n]


def test_ingest_writes_a_store_readers_can_use(data_dir: Path, tmp_path: Path) -> None:
    files = _lpd_files(data_dir, 12)
    summary = ingest(files, tmp_path / "store", workers=1)
    assert summary.files_read == 12 and summary.phrases_written > 12
    with PhraseStore.open(tmp_path / "store") as store:
        assert len(store) == summary.phrases_written
        rows = np.concatenate([store.rows(s) for s in ("train", "validation", "test")])
        assert sorted(rows.tolist()) == list(range(len(store)))
        table = store.phrase_table()
        # LPD songs are named by their MSD id (the folder), as in LPD's own id lists.
        assert set(table["song_id"]) == {f.parent.name for f in files}
        from midivae.io import read_lpd
        from midivae.song import cut_phrases

        first = cut_phrases(read_lpd(files[0]))
        mine = np.flatnonzero(table["song_id"] == files[0].parent.name)
        assert np.array_equal(store.phrases(mine), first.phrases)
        assert np.array_equal(store.bar_offsets(mine), first.bar_offsets)
        masks = table["track_mask"][mine]
        used = first.phrases.reshape(len(first), -1, 5).any(axis=1)
        assert np.array_equal(masks, (used * (1 << np.arange(5))).sum(axis=1))
        # each row carries its song's tempo, as the reader gives it
        assert np.all(store.tempi(mine) == read_lpd(files[0]).tempo) and np.isfinite(store.tempi()).all()
    # a store written before tempi were kept (no tempo table) reads them as unknown
    import sqlite3

    with sqlite3.connect(tmp_path / "store" / "manifest.sqlite") as db:
        db.execute("DROP TABLE song_tempo")
    with PhraseStore.open(tmp_path / "store") as store:
        assert np.isnan(store.tempi()).all() and len(store.tempi([0, 1])) == 2
    # ingesting the same files again reads nothing twice but their tempo, once
    again = ingest(files, tmp_path / "store", workers=1)
    assert again.already_done == 12 and again.phrases_written == 0 and again.tempi_added == summary.songs_written
    with PhraseStore.open(tmp_path / "store") as store:
        assert np.all(store.tempi(mine) == read_lpd(files[0]).tempo) and np.isfinite(store.tempi()).all()
    assert ingest(files, tmp_path / "store", workers=1).tempi_added == 0


def test_duplicate_songs_are_stored_once_in_one_split(data_dir: Path, tmp_path: Path) -> None:
    src = _lpd_files(data_dir, 3)
    # The same MIDI content under two more song ids, as LPD-5 lists one file under several MSD ids.
    copies = []
    for i, name in enumerate(["TRAAAAA000000000A1", "TRAAAAA000000000A2"]):
        dst = tmp_path / "lpd" / name / src[0].name
        dst.parent.mkdir(parents=True)
        shutil.copy(src[0], dst)
        copies.append(dst)
    summary = ingest([*src, *copies], tmp_path / "store", workers=1)
    assert summary.duplicates == 2 and summary.songs_written == 3
    with PhraseStore.open(tmp_path / "store") as store:
        songs = {s["song_id"]: s for s in store.songs()}
        original = songs[src[0].parent.name]
        for name in ("TRAAAAA000000000A1", "TRAAAAA000000000A2"):
            assert songs[name]["duplicate_of"] == original["song_id"]
            assert songs[name]["split"] == original["split"]
            assert songs[name]["n_phrases"] == 0
        assert len(set(store.song_ids())) == 3


def test_skipped_files_are_reported_and_not_retried(data_dir: Path, tmp_path: Path) -> None:
    bad = sorted((data_dir / "midi" / "corrupted").iterdir())
    summary = ingest(bad, tmp_path / "store", workers=1)
    assert summary.files_read == 0 and sum(summary.skipped.values()) == 3
    assert set(summary.skipped) == {"empty file", "not a MIDI file", "corrupt or truncated MIDI"}
    again = ingest(bad, tmp_path / "store", workers=1)
    assert again.already_done == 3 and sum(again.skipped.values()) == 0


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such phrase store"):
        PhraseStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no store.json"):
        PhraseStore.open(tmp_path / "empty")


def _store_state(path: Path) -> tuple:
    db = sqlite3.connect(path / "manifest.sqlite")
    tables = tuple(
        tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in ("songs", "phrases", "meta")
    )
    sources = tuple(db.execute("SELECT path, song_id, status, reason, n_phrases FROM sources ORDER BY path"))
    db.close()
    n_rows = int(dict(tables[2])["n_rows"])
    data = (path / "phrases.bin").read_bytes()[: n_rows * PACKED_BYTES]
    return tables, sources, data


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from midivae.data import ingest as ing
    from midivae.data.store import StoreWriter
    mode, after = sys.argv[3], int(sys.argv[4])
    files = sys.argv[5:]
    if mode == "between-bin-and-manifest":
        # Die after the phrase bytes are appended but before the manifest commits.
        original = StoreWriter.commit
        calls = {"n": 0}
        def commit(self, songs, skipped=()):
            calls["n"] += 1
            if calls["n"] == after:
                import numpy as np
                self._bin.write(b"".join(np.ascontiguousarray(s.packed).tobytes() for s in songs))
                self._bin.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, songs, skipped)
        StoreWriter.commit = commit
        ing.COMMIT_EVERY_FILES = 5
    else:
        ing.COMMIT_EVERY_FILES = 7
        seen = {"n": 0}
        def on_file(outcome):
            seen["n"] += 1
            if seen["n"] == after:
                os.kill(os.getpid(), signal.SIGKILL)
    ing.ingest(files, sys.argv[2], workers=int(sys.argv[1]),
               on_file=None if mode == "between-bin-and-manifest" else on_file)
    """
)


@pytest.mark.parametrize("mode,after", [("mid-batch", 23), ("between-bin-and-manifest", 3)])
def test_killed_ingest_resumes_to_the_same_store(data_dir: Path, tmp_path: Path, mode: str, after: int) -> None:
    files = [str(f) for f in _lpd_files(data_dir, 40)]
    files.append(str(data_dir / "midi" / "corrupted" / "empty.mid"))
    reference = tmp_path / "reference"
    ingest(files, reference, workers=1)

    resumed = tmp_path / "resumed"
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    proc = subprocess.run([sys.executable, str(script), "2", str(resumed), mode, str(after), *files])
    assert proc.returncode == -signal.SIGKILL
    with PhraseStore.open(resumed) as partial:  # readers see only committed phrases
        assert 0 < len(partial) < len(PhraseStore.open(reference))
    summary = ingest(files, resumed, workers=2)
    assert summary.already_done > 0
    assert _store_state(resumed) == _store_state(reference)
    assert (resumed / "phrases.bin").stat().st_size == (reference / "phrases.bin").stat().st_size


def test_musegan_phrase_file_ingests_one_song_per_phrase(tmp_path: Path) -> None:
    from midivae.io.musegan import write_musegan

    phrases = random_phrases(30, seed=4)
    phrases[5] = False
    write_musegan(tmp_path / "train_x_lpd_5_phr.npz", [phrases[:11], phrases[11:]], 30)
    summary = ingest([tmp_path / "train_x_lpd_5_phr.npz"], tmp_path / "store", workers=1)
    assert summary.files_read == 1 and summary.phrases_written == 29
    assert summary.empty_phrases_skipped == 1
    with PhraseStore.open(tmp_path / "store") as store:
        assert np.array_equal(store.phrases(), np.delete(phrases, 5, axis=0))
        assert store.song_ids()[:2] == ["train_x_lpd_5_phr/000000", "train_x_lpd_5_phr/000001"]
        assert np.isnan(store.tempi()).all()  # a phrase file keeps no tempo
    again = ingest([tmp_path / "train_x_lpd_5_phr.npz"], tmp_path / "store", workers=1)
    assert again.phrases_written == 0
