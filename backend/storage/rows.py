"""Row caches: an array (N, *row) on disk whose rows are computed on demand and stored once each with a "filled"
flag, shared by threads and processes, so no row is computed twice across requests, pages and jobs."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from backend.storage.files import atomic_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, concurrent writers may then compute a row twice
    fcntl = None

__all__ = ["RowCache", "file_lock"]

log = logging.getLogger(__name__)
_IO_BYTES = 1 << 30  # at most this much per read or write call (Linux moves at most ~2 GiB per call)


@contextlib.contextmanager
def file_lock(paths: Iterable[Path]) -> Iterator[None]:
    """Exclusive locks on the lock files `paths` (created on demand), taken in sorted order so that two holders of
    overlapping sets never deadlock; released on exit, or by the system when the holder dies."""
    with contextlib.ExitStack() as stack:
        for path in sorted(set(map(Path, paths))):
            handle = stack.enter_context(open(path, "a+b"))
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


@functools.lru_cache(maxsize=256)
def _header(head: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy header (parsed once per distinct header: every row read checks one); ValueError
    unless it describes a C-ordered array of plain values."""
    stream = io.BytesIO(head)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if fortran or dtype.hasobject or stream.tell() != len(head):
        raise ValueError("not a C-ordered array of plain values")
    return shape, dtype


def _read_at(fd: int, offset: int, size: int) -> bytes:
    """Exactly `size` bytes at `offset`; ValueError if the file ends first."""
    parts = []
    while size > 0:
        part = os.pread(fd, min(size, _IO_BYTES), offset)
        if not part:
            raise ValueError("the file is shorter than its header says")
        parts.append(part)
        offset, size = offset + len(part), size - len(part)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _write_at(fd: int, offset: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view[:_IO_BYTES], offset)
        offset, view = offset + done, view[done:]


def _layout(fd: int) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the .npy file open as `fd`; ValueError unless it is whole."""
    start = os.pread(fd, 256, 0)  # numpy pads a header to 64 bytes: most fit
    if len(start) < 12 or start[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy file")
    offset = 10 + int.from_bytes(start[8:10], "little") if start[6] == 1 else 12 + int.from_bytes(start[8:12], "little")
    head = start[:offset] if offset <= len(start) else start + _read_at(fd, len(start), offset - len(start))
    shape, dtype = _header(head)
    if os.fstat(fd).st_size != offset + math.prod(shape) * dtype.itemsize:
        raise ValueError("the file's size does not match its header")
    return shape, dtype, offset


def _runs(rows: np.ndarray) -> list[slice]:
    """Slices of the sorted unique `rows` over which the rows are consecutive (one file operation each)."""
    if len(rows) < 2:  # one row (an image asked for): no array arithmetic
        return [slice(0, len(rows))] if len(rows) else []
    breaks = [0, *(np.flatnonzero(np.diff(rows) != 1) + 1).tolist(), len(rows)]
    return [slice(a, b) for a, b in zip(breaks[:-1], breaks[1:]) if b > a]


def _flags(fd: int, offset: int, rows: np.ndarray) -> np.ndarray:
    """The filled flags (len(rows),) bool of `rows`, read as one span."""
    if not len(rows):
        return np.zeros(0, dtype=bool)
    low, high = int(rows.min()), int(rows.max())
    return np.frombuffer(_read_at(fd, offset + low, high - low + 1), dtype=np.uint8)[rows - low] != 0


class _Files(NamedTuple):
    """A row cache's two files, open, with the values' shape, dtype and both data offsets."""

    values: int
    flags: int
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    flag_offset: int


class RowCache:
    """Rows of an array `shape` of `dtype` in `<stem>.npy`, filled on demand, with a bool flag per row in
    `<stem>.filled.npy`; missing or unreadable files are rebuilt empty (with a warning), never trusted.

    Writers hold the lock `<stem>.lock`; readers take none (a page reads while a long pass writes): rows are written
    before their flags, a filled row is never rewritten, files are replaced only under the lock, and a reader that
    finds its values file replaced while it read takes nothing from it. A reader may leave out `shape` and `dtype`
    to take what is stored. `durable` writes reach the disk before their flags.
    """

    def __init__(self, stem: Path, shape: Sequence[int] | None = None, dtype=None, *, durable: bool = False) -> None:
        self.values_path, self.filled_path = Path(f"{stem}.npy"), Path(f"{stem}.filled.npy")
        self.lock_path = Path(f"{stem}.lock")
        self.shape = None if shape is None else tuple(int(s) for s in shape)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.durable = durable

    def _matches(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        return (self.shape is None or shape == self.shape) and (self.dtype is None or dtype == self.dtype)

    @contextlib.contextmanager
    def _open(self, mode: str = "rb") -> Iterator[_Files]:
        """The two files open (the values first); ValueError if they do not fit this cache or each other, or if the
        values file was replaced or removed before the block ended."""
        with open(self.values_path, mode, buffering=0) as values, open(self.filled_path, mode, buffering=0) as flags:
            shape, dtype, offset = _layout(values.fileno())
            flag_shape, flag_dtype, flag_offset = _layout(flags.fileno())
            if not self._matches(shape, dtype) or flag_shape != shape[:1] or flag_dtype != np.bool_:
                raise ValueError("the values and flags do not fit")
            yield _Files(values.fileno(), flags.fileno(), shape, dtype, offset, flag_offset)
            now, then = os.stat(self.values_path), os.fstat(values.fileno())
            if (now.st_ino, now.st_dev) != (then.st_ino, then.st_dev):
                raise ValueError("replaced while reading")

    def filled(self) -> np.ndarray | None:
        """Which rows are filled (N,) bool; None when the files are missing or unreadable."""
        try:
            with self._open() as files:
                found = _flags(files.flags, files.flag_offset, np.arange(files.shape[0]))
        except (OSError, ValueError):
            return None
        return found

    def prefix(self) -> np.ndarray | None:
        """The values of the filled rows before the first unfilled one (all a writer going in row order has
        finished); None when the files are missing or unreadable."""
        try:
            with self._open() as files:
                filled = _flags(files.flags, files.flag_offset, np.arange(files.shape[0]))
                k = len(filled) if filled.all() else int(filled.argmin())
                row_bytes = math.prod(files.shape[1:]) * files.dtype.itemsize
                data = _read_at(files.values, files.offset, k * row_bytes)
        except (OSError, ValueError):
            return None
        return np.frombuffer(data, dtype=files.dtype).reshape(k, *files.shape[1:])

    def fetch(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of `rows` are filled (len(rows),) bool and their values (len(rows), *row), zeros where not filled;
        for a cache with `shape` and `dtype`."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.zeros((len(rows), *self.shape[1:]), dtype=self.dtype)
        try:
            with self._open() as files:
                found = _flags(files.flags, files.flag_offset, rows)
                wanted = np.unique(rows[found])
                stored = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
                row_bytes = out[:1].nbytes
                for run in _runs(wanted):
                    data = _read_at(
                        files.values, files.offset + int(wanted[run.start]) * row_bytes, len(stored[run]) * row_bytes
                    )
                    stored[run] = np.frombuffer(data, dtype=self.dtype).reshape(-1, *self.shape[1:])
        except (OSError, ValueError):
            return np.zeros(len(rows), dtype=bool), out
        out[found] = stored[np.searchsorted(wanted, rows[found])]
        return found, out

    def complete(self) -> np.ndarray | None:
        """All rows, memory-mapped read-only, if every row is filled; None otherwise."""
        try:
            with self._open() as files:
                if not _flags(files.flags, files.flag_offset, np.arange(files.shape[0])).all():
                    return None
                return np.memmap(self.values_path, files.dtype, "r", files.offset, files.shape)
        except (OSError, ValueError):
            return None

    def write(self, rows: Sequence[int] | np.ndarray, values: np.ndarray, *, held: bool = False) -> None:
        """Store `values` (len(rows), *row) as those of `rows` not filled yet (a filled row keeps its values), then
        flag them. `held`: the caller holds `file_lock([lock_path])` already, for a series of writes."""
        rows, first = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1), return_index=True)
        values = np.asarray(values, dtype=self.dtype).reshape(-1, *self.shape[1:])[first]
        with contextlib.nullcontext() if held else file_lock([self.lock_path]), self._writable() as files:
            new = ~_flags(files.flags, files.flag_offset, rows)
            rows, values = rows[new], values[new]
            row_bytes = values[:1].nbytes
            for run in _runs(rows):
                data = np.ascontiguousarray(values[run]).tobytes()
                _write_at(files.values, files.offset + int(rows[run.start]) * row_bytes, data)
            if self.durable:
                os.fsync(files.values)
            for run in _runs(rows):
                _write_at(files.flags, files.flag_offset + int(rows[run.start]), b"\x01" * (run.stop - run.start))

    def remove(self, *, held: bool = False) -> None:
        """Delete the values and flags (not the lock file, which others may hold open)."""
        with contextlib.nullcontext() if held else file_lock([self.lock_path]):
            self.filled_path.unlink(missing_ok=True)
            self.values_path.unlink(missing_ok=True)

    def _writable(self) -> contextlib.AbstractContextManager[_Files]:
        """The files open for writing, created empty first (all rows unfilled) when they are missing, unreadable or
        of another shape, with a warning if there were any; the caller holds the lock."""
        try:
            with self._open():
                return self._open("r+b")
        except (OSError, ValueError):
            pass
        if self.values_path.exists() or self.filled_path.exists():
            log.warning("rebuilding the unreadable row cache %s", self.values_path)
        with atomic_path(self.filled_path) as tmp:  # the flags first: no crash leaves old flags on new values
            np.lib.format.open_memmap(tmp, "w+", bool, self.shape[:1]).flush()
        with atomic_path(self.values_path) as tmp:  # sparse: rows take disk space as they are filled
            np.lib.format.open_memmap(tmp, "w+", self.dtype, self.shape).flush()
        return self._open("r+b")
