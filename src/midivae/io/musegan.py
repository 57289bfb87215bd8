"""MuseGAN's phrase file (``train_x_lpd_5_phr.npz``), read and written as a stream.

The file is a numpy ``.npz`` with two arrays, as MuseGAN's ``collect_data.py`` writes it:
``shape`` = ``[n, 4, 48, 84, 5]`` and ``nonzero`` = ``np.array(np.nonzero(dense))``, an integer
array ``(5, nnz)`` whose columns are sorted by phrase (C order). Its dense form is 7.7 GiB, so the
reader never builds it: it keeps one reader per row of the ``nonzero.npy`` member, each positioned
at its row start (a file offset when the member is stored; a forked inflater state when deflated),
and reads the five rows in lockstep, block by block, cutting at phrase boundaries. Memory stays at
one chunk of phrases plus one block of columns, whatever the file size.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
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
#: Columns read per block from each row (2 MiB per row for int64).
BLOCK_COLUMNS = 1 << 18
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


class _RawSource:
    """Bytes of a stored member, read with ``pread`` from a shared descriptor at its own offset."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd, self._pos, self._end = fd, start, end

    def read(self, n: int) -> bytes:
        data = os.pread(self._fd, min(n, self._end - self._pos), self._pos)
        self._pos += len(data)
        return data

    def finish(self) -> None:
        pass


class _Inflater:
    """Raw-deflate reader of a zip member from a shared descriptor; ``fork`` copies its state.

    Rows of a deflated member can only be reached by inflating what precedes them. One pass
    inflates rows 0-3 once and forks a reader at each row start (``zlib``'s decompressor state is
    copyable), so the member is inflated 9 row-lengths in all instead of 15 with per-handle seeks.
    The reader that runs to the end checks the member's CRC.
    """

    IN_CHUNK = 64 << 10

    def __init__(self, fd: int, start: int, end: int, crc: int | None = 0) -> None:
        self._fd, self._pos, self._end = fd, start, end
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._tail = b""
        self._crc = crc  # None: not checked by this reader
        self.produced = 0

    def fork(self) -> _Inflater:
        other = _Inflater.__new__(_Inflater)
        other._fd, other._pos, other._end = self._fd, self._pos, self._end
        other._inflate = self._inflate.copy()
        other._tail, other._crc, other.produced = self._tail, None, self.produced
        return other

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        need = n
        while need > 0:
            if not self._tail:
                if self._pos >= self._end or self._inflate.eof:
                    break
                self._tail = os.pread(self._fd, min(self.IN_CHUNK, self._end - self._pos), self._pos)
                if not self._tail:
                    break
                self._pos += len(self._tail)
            out = self._inflate.decompress(self._tail, need)
            self._tail = self._inflate.unconsumed_tail
            if out:
                parts.append(out)
                need -= len(out)
            elif self._inflate.eof:
                break
        data = b"".join(parts)
        self.produced += len(data)
        if self._crc is not None:
            self._crc = zlib.crc32(data, self._crc)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, 4 << 20)))
            if not got:
                raise EOFError("'nonzero' member ends early")
            n -= got

    def finish(self, crc: int) -> None:
        if self._crc is not None and (self._crc & 0xFFFFFFFF) != crc:
            raise zipfile.BadZipFile("bad CRC-32 for 'nonzero'")


class _RowReader:
    """Sequential blocks of one row of ``nonzero`` from its own byte source."""

    def __init__(self, source, dtype: np.dtype, n_columns: int) -> None:
        self._source = source
        self._dtype = dtype
        self._left = n_columns

    def read(self, n_columns: int) -> np.ndarray:
        n = min(n_columns, self._left)
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        nbytes = n * self._dtype.itemsize
        data = self._source.read(nbytes)
        if len(data) < nbytes:
            parts, got = [data], len(data)
            while got < nbytes:
                more = self._source.read(nbytes - got)
                if not more:
                    raise EOFError(f"'nonzero' ends after {got} of {nbytes} bytes of a block")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self._left -= n
        return np.frombuffer(data, dtype=self._dtype).astype(np.int64, copy=False)


class _ZipSource:
    """Fallback for members neither stored nor deflated: zipfile's own (slow) seek."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, start: int) -> None:
        self._fp = zf.open(info)
        self._fp.seek(start)

    def read(self, n: int) -> bytes:
        return self._fp.read(n)

    def finish(self) -> None:
        self._fp.close()


def _data_offset(archive: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Byte offset of a member's (compressed) data inside the archive, after its local header."""
    archive.seek(info.header_offset)
    header = _LOCAL_HEADER.unpack(archive.read(_LOCAL_HEADER.size))
    if header[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    return info.header_offset + _LOCAL_HEADER.size + header[9] + header[10]


def _open_rows(path: Path, zf: zipfile.ZipFile, fd: int) -> tuple[list[_RowReader], Callable[[], None], int]:
    """One reader per row of ``nonzero``, each at its row start; a check for the end; and nnz."""
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
    sources: list = []
    finish: Callable[[], None]
    if info.compress_type == zipfile.ZIP_STORED:
        base = header_len + _data_offset(zf.fp, info)  # type: ignore[arg-type]
        end = base + N_AXES * row_bytes
        sources = [_RawSource(fd, base + r * row_bytes, end) for r in range(N_AXES)]
        finish = lambda: None  # noqa: E731
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        start = _data_offset(zf.fp, info)  # type: ignore[arg-type]
        main = _Inflater(fd, start, start + info.compress_size)
        main.skip(header_len)
        for r in range(N_AXES - 1):
            sources.append(main.fork())
            main.skip(row_bytes)
        sources.append(main)

        def finish() -> None:
            if main.read(1) or main.produced != info.file_size:
                raise zipfile.BadZipFile("'nonzero' member longer than its header says")
            main.finish(info.CRC)
    else:
        sources = [_ZipSource(zf, info, header_len + r * row_bytes) for r in range(N_AXES)]

        def finish() -> None:
            for source in sources:
                source.finish()

    return [_RowReader(s, dtype, nnz) for s in sources], finish, nnz


def _fill(out: np.ndarray, columns: np.ndarray, first: int) -> None:
    """Set the cells of nonzero ``columns`` ``(5, m)`` in flat phrases ``out`` starting at ``first``."""
    if columns.shape[1]:
        flat = columns[0] - first
        for axis, size in enumerate(PHRASE_SHAPE, start=1):
            flat *= size
            flat += columns[axis]
        out[flat] = True


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
    fd = -1
    try:
        try:
            n = _read_shape(path, zf)
            fd = os.open(path, os.O_RDONLY)
            readers, finish, nnz = _open_rows(path, zf, fd)
        except InvalidInputError:
            raise
        except _READ_ERRORS as exc:
            raise InvalidInputError(path, f"corrupt phrase file ({exc})") from None
        yield from _stream(path, readers, finish, n, nnz, chunk_phrases)
    finally:
        if fd >= 0:
            os.close(fd)
        zf.close()


def _stream(
    path: Path,
    readers: list[_RowReader],
    finish: Callable[[], None],
    n: int,
    nnz: int,
    chunk_phrases: int,
) -> Iterator[np.ndarray]:
    """Read the rows in lockstep and fill the current chunk as blocks arrive.

    A chunk goes out as soon as a column of a later phrase is seen; the last one only after the
    member's end was checked, so a consumer never receives all of a corrupt file.
    """
    start, stop = 0, min(chunk_phrases, n)
    out: np.ndarray | None = None
    read = 0
    previous = 0
    while read < nnz:
        try:
            block = np.stack([reader.read(BLOCK_COLUMNS) for reader in readers])
            _check_block(block, n, previous)
        except _READ_ERRORS as exc:
            raise InvalidInputError(path, f"corrupt 'nonzero' array ({exc})") from None
        read += block.shape[1]
        previous = int(block[0, -1])
        phrase = block[0]
        i = 0
        while i < block.shape[1]:
            cut = i + int(np.searchsorted(phrase[i:], stop, side="left"))
            if cut > i:
                if out is None:
                    out = np.zeros((stop - start) * PHRASE_CELLS, dtype=bool)
                _fill(out, block[:, i:cut], start)
            i = cut
            if i < block.shape[1]:  # a later phrase: the current chunk is complete
                yield _finished(out, start, stop)
                out = None
                start, stop = stop, min(stop + chunk_phrases, n)
    try:
        finish()
    except _READ_ERRORS as exc:
        raise InvalidInputError(path, f"corrupt 'nonzero' array ({exc})") from None
    while start < n:
        yield _finished(out, start, stop)
        out = None
        start, stop = stop, min(stop + chunk_phrases, n)


def _finished(out: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    if out is None:
        out = np.zeros((stop - start) * PHRASE_CELLS, dtype=bool)
    return out.reshape(stop - start, *PHRASE_SHAPE)


def write_musegan(
    path: str | os.PathLike[str],
    chunks: Iterable[np.ndarray],
    n_phrases: int,
    compressed: bool = True,
    compresslevel: int | None = None,
) -> int:
    """Write phrases, given as chunks ``(k, 4, 48, 84, 5)``, as a MuseGAN phrase file.

    The format is exactly what MuseGAN's ``collect_data.py`` writes (``np.savez_compressed`` of
    ``shape`` and ``nonzero`` int64), so MuseGAN and numpy read it back. The ``nonzero`` rows are
    spooled to temporary files beside ``path`` and streamed into the archive, so memory holds one
    chunk, never the whole array. The file appears atomically. Returns the number of nonzero cells.
    ``compresslevel`` None is zlib's default, as numpy uses; 1 writes about 4x faster, 2x larger.
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
                # flatnonzero + unravel_index: the same arrays as np.nonzero, 5x faster on 5-D.
                index = np.unravel_index(np.flatnonzero(chunk), chunk.shape)
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
                with zipfile.ZipFile(
                    fh, "w", compression=compression, allowZip64=True, compresslevel=compresslevel
                ) as zf:
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
