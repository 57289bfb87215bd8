"""MuseGAN's phrase file (``train_x_lpd_5_phr.npz``), read and written as a stream.

The file is a numpy ``.npz`` with two arrays, as MuseGAN's ``collect_data.py`` writes it:
``shape`` = ``[n, 4, 48, 84, 5]`` and ``nonzero`` = ``np.array(np.nonzero(dense))``, an integer
array ``(5, nnz)`` whose columns are sorted by phrase (C order). Its dense form is 7.7 GiB, so the
reader never builds it: it opens the ``nonzero.npy`` member once per row, seeks each handle to the
start of its row and reads the five rows in lockstep, block by block, cutting at phrase
boundaries. Memory stays at one chunk of phrases plus one block of columns, whatever the file size.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from midivae.constants import PHRASE_CELLS, PHRASE_SHAPE
from midivae.errors import InvalidInputError
from midivae.io.atomic import atomic_open

SHAPE_MEMBER = "shape.npy"
NONZERO_MEMBER = "nonzero.npy"
#: Rows of ``nonzero``: phrase, bar, step, pitch, track.
N_AXES = 1 + len(PHRASE_SHAPE)
#: Columns read per block from each row (8 MiB per row for int64).
BLOCK_COLUMNS = 1 << 20
_COPY_BYTES = 16 << 20
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, struct.error)


def _read_header(fp: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_shape(path: Path, zf: zipfile.ZipFile) -> int:
    """Validate the ``shape`` member and return the number of phrases."""
    if SHAPE_MEMBER not in zf.namelist():
        raise InvalidInputError(path, "not a MuseGAN phrase file (no 'shape' array)")
    with zf.open(SHAPE_MEMBER) as fp:
        shape = np.lib.format.read_array(fp, allow_pickle=False)
    if shape.ndim != 1 or shape.dtype.kind not in "iu" or tuple(int(s) for s in shape[1:]) != PHRASE_SHAPE:
        raise InvalidInputError(
            path, f"shape {shape.tolist()} is not [n, {', '.join(map(str, PHRASE_SHAPE))}]"
        )
    if int(shape[0]) < 0:
        raise InvalidInputError(path, f"negative phrase count {int(shape[0])}")
    return int(shape[0])


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InvalidInputError(path, "file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(path, f"not a readable .npz archive ({exc})") from None


def musegan_count(path: str | os.PathLike[str]) -> int:
    """Number of phrases in a MuseGAN phrase file (reads only its ``shape`` array)."""
    path = Path(path)
    with _open_zip(path) as zf:
        try:
            return _read_shape(path, zf)
        except InvalidInputError:
            raise
        except _READ_ERRORS as exc:
            raise InvalidInputError(path, f"corrupt 'shape' array ({exc})") from None


class _RowReader:
    """Sequential reads of one row of ``nonzero``, from its own file handle."""

    def __init__(self, fp: BinaryIO, start: int, dtype: np.dtype, n_columns: int, raw: bool) -> None:
        self._fp = fp
        self._dtype = dtype
        self._left = n_columns
        # A stored member is read straight from the archive file (no per-byte zipfile layer);
        # a deflated one has to be decompressed up to the row start.
        self._fp.seek(start)
        self._raw = raw

    def read(self, n_columns: int) -> np.ndarray:
        n = min(n_columns, self._left)
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        nbytes = n * self._dtype.itemsize
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        while got < nbytes:
            if self._raw:
                k = self._fp.readinto(view[got:])
            else:
                chunk = self._fp.read(nbytes - got)
                k = len(chunk)
                view[got : got + k] = chunk
            if not k:
                raise EOFError(f"'nonzero' ends after {got} of {nbytes} bytes of a block")
            got += k
        self._left -= n
        return np.frombuffer(buf, dtype=self._dtype).astype(np.int64, copy=False)

    def close(self) -> None:
        self._fp.close()


def _stored_data_offset(archive: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored member's data inside the archive (after its local header)."""
    archive.seek(info.header_offset)
    header = _LOCAL_HEADER.unpack(archive.read(_LOCAL_HEADER.size))
    if header[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    return info.header_offset + _LOCAL_HEADER.size + header[9] + header[10]


def _open_rows(path: Path, zf: zipfile.ZipFile) -> tuple[list[_RowReader], int]:
    """One reader per row of ``nonzero``, each positioned at its row; and nnz."""
    if NONZERO_MEMBER not in zf.namelist():
        raise InvalidInputError(path, "not a MuseGAN phrase file (no 'nonzero' array)")
    info = zf.getinfo(NONZERO_MEMBER)
    with zf.open(info) as fp:
        shape, fortran, dtype = _read_header(fp)
        header_len = fp.tell()
    if fortran:
        raise InvalidInputError(path, "'nonzero' is stored in Fortran order (rows not contiguous)")
    if dtype.kind not in "iu":
        raise InvalidInputError(path, f"'nonzero' has dtype {dtype}, expected integers")
    if len(shape) != 2 or shape[0] != N_AXES:
        raise InvalidInputError(path, f"'nonzero' has shape {shape}, expected ({N_AXES}, nnz)")
    nnz = int(shape[1])
    if header_len + N_AXES * nnz * dtype.itemsize != info.file_size:
        raise InvalidInputError(path, "'nonzero' size does not match its header (truncated?)")
    row_bytes = nnz * dtype.itemsize
    readers: list[_RowReader] = []
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            base = header_len + _stored_data_offset(zf.fp, info)  # type: ignore[arg-type]
            for r in range(N_AXES):
                readers.append(_RowReader(open(path, "rb"), base + r * row_bytes, dtype, nnz, True))
        else:
            for r in range(N_AXES):
                readers.append(_RowReader(zf.open(info), header_len + r * row_bytes, dtype, nnz, False))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers, nnz


def _densify(columns: np.ndarray, first: int, stop: int) -> np.ndarray:
    """Bool phrases ``first..stop-1`` from their nonzero columns ``(5, m)``."""
    out = np.zeros((stop - first) * PHRASE_CELLS, dtype=bool)
    if columns.shape[1]:
        flat = columns[0] - first
        for axis, size in enumerate(PHRASE_SHAPE, start=1):
            flat = flat * size + columns[axis]
        out[flat] = True
    return out.reshape(stop - first, *PHRASE_SHAPE)


def _check_block(block: np.ndarray, n: int, previous: int) -> None:
    """Bounds of every axis and phrase order; raises ValueError with the reason."""
    phrase = block[0]
    if phrase[0] < previous or np.any(phrase[1:] < phrase[:-1]):
        raise ValueError("'nonzero' columns are not sorted by phrase")
    if phrase[-1] >= n:
        raise ValueError(f"phrase index {int(phrase[-1])} out of range for {n} phrases")
    for axis, size in enumerate(PHRASE_SHAPE, start=1):
        row = block[axis]
        if row.min() < 0 or row.max() >= size:
            raise ValueError(f"index out of range on axis {axis} (size {size})")


def iter_musegan(path: str | os.PathLike[str], chunk_phrases: int = 1024) -> Iterator[np.ndarray]:
    """Yield the file's phrases in order as bool chunks ``(k, 4, 48, 84, 5)``, k <= chunk_phrases.

    Every chunk but the last holds exactly ``chunk_phrases`` phrases (empty phrases included: the
    file's phrase numbering is kept). Raises InvalidInputError, naming the file and the cause, for
    anything that is not a well-formed phrase file.
    """
    if chunk_phrases < 1:
        raise ValueError("chunk_phrases must be >= 1")
    path = Path(path)
    zf = _open_zip(path)
    readers: list[_RowReader] = []
    try:
        try:
            n = _read_shape(path, zf)
            readers, nnz = _open_rows(path, zf)
        except InvalidInputError:
            raise
        except _READ_ERRORS as exc:
            raise InvalidInputError(path, f"corrupt phrase file ({exc})") from None
        yield from _stream(path, readers, n, nnz, chunk_phrases)
    finally:
        for reader in readers:
            reader.close()
        zf.close()


def _stream(
    path: Path, readers: list[_RowReader], n: int, nnz: int, chunk_phrases: int
) -> Iterator[np.ndarray]:
    pending = np.zeros((N_AXES, 0), dtype=np.int64)
    read = 0
    start = 0  # first phrase of the next chunk
    while start < n:
        eof = read >= nnz
        if not eof:
            try:
                block = np.stack([reader.read(BLOCK_COLUMNS) for reader in readers])
                _check_block(block, n, int(pending[0, -1]) if pending.shape[1] else start)
            except _READ_ERRORS as exc:
                raise InvalidInputError(path, f"corrupt 'nonzero' array ({exc})") from None
            read += block.shape[1]
            pending = np.concatenate([pending, block], axis=1) if pending.shape[1] else block
            eof = read >= nnz
        # Phrases below ``complete`` have all their columns in ``pending``.
        complete = n if eof else int(pending[0, -1])
        while start < n and (min(start + chunk_phrases, n) <= complete):
            stop = min(start + chunk_phrases, n)
            cut = int(np.searchsorted(pending[0], stop, side="left"))
            yield _densify(pending[:, :cut], start, stop)
            pending = pending[:, cut:]
            start = stop
    if read < nnz:
        raise InvalidInputError(path, "'nonzero' holds columns beyond the last phrase")


def write_musegan(
    path: str | os.PathLike[str],
    chunks: Iterable[np.ndarray],
    n_phrases: int,
    compressed: bool = True,
) -> int:
    """Write phrases, given as chunks ``(k, 4, 48, 84, 5)``, as a MuseGAN phrase file.

    The format is exactly what MuseGAN's ``collect_data.py`` writes (``np.savez_compressed`` of
    ``shape`` and ``nonzero`` int64), so MuseGAN and numpy read it back. The ``nonzero`` rows are
    spooled to temporary files beside ``path`` and streamed into the archive, so memory holds one
    chunk, never the whole array. The file appears atomically. Returns the number of nonzero cells.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".musegan-", dir=path.parent) as spool_dir:
        spools = [open(Path(spool_dir) / f"row{r}", "w+b") for r in range(N_AXES)]
        try:
            total = 0
            nnz = 0
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.ndim != 1 + len(PHRASE_SHAPE) or chunk.shape[1:] != PHRASE_SHAPE:
                    raise ValueError(f"chunk of shape {chunk.shape}, expected (k, *{PHRASE_SHAPE})")
                index = np.nonzero(chunk)
                for r, (spool, row) in enumerate(zip(spools, index)):
                    row = row.astype("<i8", copy=False)
                    if r == 0 and total:
                        row = row + total
                    spool.write(row.tobytes())
                total += chunk.shape[0]
                nnz += int(index[0].shape[0])
            if total != n_phrases:
                raise ValueError(f"chunks hold {total} phrases, n_phrases says {n_phrases}")
            for spool in spools:
                spool.flush()
                spool.seek(0)
            compression = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
            with atomic_open(path, "wb") as fh:
                with zipfile.ZipFile(fh, "w", compression=compression, allowZip64=True) as zf:
                    with zf.open(SHAPE_MEMBER, "w", force_zip64=True) as member:
                        np.lib.format.write_array(
                            member, np.array((n_phrases, *PHRASE_SHAPE), dtype=np.int64)
                        )
                    with zf.open(NONZERO_MEMBER, "w", force_zip64=True) as member:
                        header = {
                            "descr": np.lib.format.dtype_to_descr(np.dtype("<i8")),
                            "fortran_order": False,
                            "shape": (N_AXES, nnz),
                        }
                        np.lib.format.write_array_header_1_0(member, header)
                        for spool in spools:
                            shutil.copyfileobj(spool, member, _COPY_BYTES)
        finally:
            for spool in spools:
                spool.close()
    return nnz


def load_musegan_dense(path: str | os.PathLike[str]) -> np.ndarray:
    """MuseGAN's own loader (``musegan/data.py``): the whole file as one dense bool array.

    Kept as the memory and speed reference for benchmarks; do not use it on the real file.
    """
    with np.load(path) as f:
        data = np.zeros(f["shape"], np.bool_)
        data[tuple(x for x in f["nonzero"])] = True
    return data
