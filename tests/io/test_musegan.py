"""MuseGAN phrase files: streaming reads equal the dense array, and the format is numpy's own."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

import midivae.io.musegan as musegan
from midivae.constants import PHRASE_SHAPE
from midivae.errors import InvalidInputError
from midivae.io.musegan import iter_musegan, load_musegan_dense, musegan_count, write_musegan


def random_phrases(n: int, seed: int = 0, density: float = 0.002, empty: tuple[int, ...] = ()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *PHRASE_SHAPE)) < density
    for i in empty:
        x[i] = False
    return x


def chunked(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def read_all(path: Path, chunk_phrases: int = 1024) -> np.ndarray:
    chunks = list(iter_musegan(path, chunk_phrases))
    if not chunks:
        return np.zeros((0, *PHRASE_SHAPE), dtype=bool)
    for c in chunks[:-1]:
        assert c.shape[0] == chunk_phrases
    assert all(c.dtype == bool and c.shape[1:] == PHRASE_SHAPE for c in chunks)
    return np.concatenate(chunks)


def save_numpy(path: Path, x: np.ndarray, compressed: bool = True, dtype=np.int64) -> None:
    """The file as MuseGAN's collect_data.py writes it, through numpy itself."""
    save = np.savez_compressed if compressed else np.savez
    save(path, shape=np.array(x.shape), nonzero=np.array(np.nonzero(x), dtype=dtype))


@pytest.fixture
def phrases() -> np.ndarray:
    # Empty phrases at the start, in the middle (a run of them) and at the end.
    return random_phrases(23, empty=(0, 7, 8, 9, 15, 22))


@pytest.mark.parametrize("compressed", [True, False])
def test_round_trip(tmp_path: Path, phrases: np.ndarray, compressed: bool) -> None:
    path = tmp_path / "phr.npz"
    nnz = write_musegan(path, chunked(phrases, 5), len(phrases), compressed=compressed)
    assert nnz == int(phrases.sum())
    assert musegan_count(path) == len(phrases)
    np.testing.assert_array_equal(read_all(path, 4), phrases)
    np.testing.assert_array_equal(load_musegan_dense(path), phrases)
    assert not list(tmp_path.glob(".*")), "spool or temporary files left behind"


@pytest.mark.parametrize("compressed", [True, False])
def test_written_file_is_numpys_format(tmp_path: Path, phrases: np.ndarray, compressed: bool) -> None:
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    write_musegan(ours, chunked(phrases, 7), len(phrases), compressed=compressed)
    save_numpy(theirs, phrases, compressed)
    with np.load(ours) as a, np.load(theirs) as b:
        assert sorted(a.files) == sorted(b.files) == ["nonzero", "shape"]
        for key in ("shape", "nonzero"):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
    kind = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(ours) as zf:
        assert {i.compress_type for i in zf.infolist()} == {kind}


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_reads_files_written_by_numpy(tmp_path: Path, phrases: np.ndarray, compressed: bool, dtype) -> None:
    path = tmp_path / "theirs.npz"
    save_numpy(path, phrases, compressed, dtype)
    assert musegan_count(path) == len(phrases)
    np.testing.assert_array_equal(read_all(path, 6), phrases)


@pytest.mark.parametrize("compressed", [True, False])
def test_every_chunk_size_and_block_size(
    tmp_path: Path, phrases: np.ndarray, compressed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "phr.npz"
    write_musegan(path, [phrases], len(phrases), compressed=compressed)
    # Blocks far smaller than a phrase's columns force phrases to straddle block boundaries.
    for block in (7, 97, 1 << 20):
        monkeypatch.setattr(musegan, "BLOCK_COLUMNS", block)
        for size in range(1, len(phrases) + 2):
            np.testing.assert_array_equal(read_all(path, size), phrases, err_msg=f"block {block} chunk {size}")


def test_empty_files(tmp_path: Path) -> None:
    none = tmp_path / "none.npz"
    write_musegan(none, [], 0)
    assert musegan_count(none) == 0
    assert list(iter_musegan(none)) == []
    silent = tmp_path / "silent.npz"
    write_musegan(silent, [np.zeros((3, *PHRASE_SHAPE), bool)], 3)
    np.testing.assert_array_equal(read_all(silent, 2), np.zeros((3, *PHRASE_SHAPE), bool))


def test_writer_rejects_wrong_counts_and_shapes(tmp_path: Path, phrases: np.ndarray) -> None:
    with pytest.raises(ValueError, match="n_phrases"):
        write_musegan(tmp_path / "a.npz", [phrases], len(phrases) + 1)
    with pytest.raises(ValueError, match="shape"):
        write_musegan(tmp_path / "b.npz", [phrases[:, :2]], len(phrases))
    assert not list(tmp_path.iterdir())


def _expect_invalid(path: Path, match: str | None = None) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        list(iter_musegan(path, 4))
    assert info.value.path == str(path)


@pytest.mark.parametrize("compressed", [True, False])
def test_truncated_and_corrupt_files(tmp_path: Path, phrases: np.ndarray, compressed: bool) -> None:
    good = tmp_path / "good.npz"
    write_musegan(good, [phrases], len(phrases), compressed=compressed)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        _expect_invalid(bad)
        with pytest.raises(InvalidInputError):
            musegan_count(bad)
    # Flip bytes inside the nonzero member's data: a CRC or inflate error, or out-of-range indices.
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("nonzero.npy")
    garbled = bytearray(data)
    start = info.header_offset + 200
    garbled[start : start + 64] = b"\xff" * 64
    bad = tmp_path / "garbled.npz"
    bad.write_bytes(bytes(garbled))
    _expect_invalid(bad)
    _expect_invalid(tmp_path / "missing.npz", "not found")
    (tmp_path / "text.npz").write_text("not a zip")
    _expect_invalid(tmp_path / "text.npz")


def test_wrong_contents(tmp_path: Path, phrases: np.ndarray) -> None:
    nz = np.array(np.nonzero(phrases))
    cases = {
        "nokey": dict(shape=np.array(phrases.shape)),
        "noshape": dict(nonzero=nz),
        "shape": dict(shape=np.array([len(phrases), 4, 96, 84, 5]), nonzero=nz),
        "rows": dict(shape=np.array(phrases.shape), nonzero=nz[:4]),
        "fortran": dict(shape=np.array(phrases.shape), nonzero=np.asfortranarray(nz)),
        "float": dict(shape=np.array(phrases.shape), nonzero=nz.astype(float)),
        "unsorted": dict(shape=np.array(phrases.shape), nonzero=nz[:, ::-1]),
        "range": dict(shape=np.array([3, *PHRASE_SHAPE]), nonzero=nz),
    }
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        _expect_invalid(path)
    bad_pitch = nz.copy()
    bad_pitch[3, -1] = PHRASE_SHAPE[2]
    np.savez(tmp_path / "pitch.npz", shape=np.array(phrases.shape), nonzero=bad_pitch)
    _expect_invalid(tmp_path / "pitch.npz", "axis 3")
    with pytest.raises(InvalidInputError, match="shape"):
        musegan_count(tmp_path / "shape.npz")


def test_deflated_member_crc_is_checked_before_the_last_chunk(tmp_path: Path, phrases: np.ndarray) -> None:
    good = tmp_path / "good.npz"
    write_musegan(good, [phrases], len(phrases), compressed=True)
    with zipfile.ZipFile(good) as zf:
        crc = zf.getinfo("nonzero.npy").CRC
    data = good.read_bytes()
    old, new = crc.to_bytes(4, "little"), (crc ^ 1).to_bytes(4, "little")
    assert data.count(old) == 2  # local header and central directory
    bad = tmp_path / "badcrc.npz"
    bad.write_bytes(data.replace(old, new))
    chunks = iter_musegan(bad, len(phrases))  # one chunk: nothing may come out
    with pytest.raises(InvalidInputError, match="CRC"):
        next(chunks)
