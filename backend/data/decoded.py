"""The decoded-image cache of file datasets: every image decoded and resized once per (file list, size) into one
uint8 array on disk (a valid .npy, (N, size, size, 3)), with a filled flag per image, so epochs and analyses never
decode a JPEG twice.

The key covers each file's id, byte size and modification time: a changed, added or removed file makes a new cache
(the old one stays in `<workspace>/cache/decoded` until deleted). Rows are read and written
with positioned file I/O, not a memory map, so reading a 25,000-image split keeps no image in the process's memory;
processes share the cache safely: a row is written before its flag, and two writers of a row write the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from backend.storage import atomic_path, cache_key, digest_lines

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: two processes creating the same cache may then race
    fcntl = None

__all__ = ["DecodedImages", "decoded_key"]

log = logging.getLogger(__name__)
_VERSION = 1  # bump when the decoding (resampling, crop) changes, so old caches miss


def decoded_key(paths: Sequence[Path], sample_ids: Sequence[str], size: int) -> str:
    """The cache key of a file list at one image size: ids, byte sizes and modification times of every file."""
    lines = []
    for sid, path in zip(sample_ids, paths):
        try:
            stat = path.stat()
            lines.append(f"{sid}\t{stat.st_size}\t{stat.st_mtime_ns}")
        except OSError:  # a missing file fails when it is read, with its own message
            lines.append(f"{sid}\t-\t-")
    return cache_key(version=_VERSION, size=size, files=digest_lines(lines))


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


class DecodedImages:
    """Images (N, size, size, 3) uint8 of one file list, decoded by `decode(i)` on first access and read back from
    `<root>/<key>.npy` after; `filled` flags in `<key>.filled` say which rows hold an image."""

    def __init__(self, root: Path, key: str, n: int, size: int, decode: Callable[[int], np.ndarray]) -> None:
        self.n, self.size, self._decode = n, size, decode
        self.values_path, self.filled_path = root / f"{key}.npy", root / f"{key}.filled"
        self._row_bytes = size * size * 3
        self._offset = self._open(root / f"{key}.lock")

    def _open(self, lock: Path) -> int:
        """Create the two files once (under a lock, so two processes never replace each other's); returns the
        byte offset of the first row."""
        shape = (self.n, self.size, self.size, 3)
        with _exclusive(lock):
            offset = self._header_length(shape)
            if offset is None or os.path.getsize(self.filled_path) != self.n:
                if self.values_path.exists():
                    log.warning("rebuilding the unreadable decoded-image cache %s", self.values_path)
                with atomic_path(self.filled_path) as tmp:
                    tmp.write_bytes(bytes(self.n))
                with atomic_path(self.values_path) as tmp:  # sparse: rows take disk space as they are filled
                    np.lib.format.open_memmap(tmp, "w+", np.uint8, shape).flush()
                offset = self._header_length(shape)
        return offset

    def _header_length(self, shape: tuple[int, ...]) -> int | None:
        """Where the rows start in the .npy file if it exists with this shape and dtype (None otherwise)."""
        try:
            with open(self.values_path, "rb") as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                found, fortran, dtype = read_header(handle)
                offset = handle.tell()
            ok = found == shape and not fortran and dtype == np.uint8 and self.filled_path.exists()
        except (OSError, ValueError):
            return None
        expected = offset + int(np.prod(shape))
        return offset if ok and os.path.getsize(self.values_path) == expected else None

    def filled(self) -> np.ndarray:
        """Which rows hold their image (N,) bool."""
        return np.frombuffer(self.filled_path.read_bytes(), dtype=np.uint8).astype(bool)

    def __call__(self, index: int) -> np.ndarray:
        """Image `index` (size, size, 3) uint8: from the cache, else decoded and stored."""
        with open(self.filled_path, "rb") as flags:
            ready = os.pread(flags.fileno(), 1, index) == b"\x01"
        if ready:
            with open(self.values_path, "rb") as handle:
                row = os.pread(handle.fileno(), self._row_bytes, self._offset + index * self._row_bytes)
            if len(row) == self._row_bytes:
                return np.frombuffer(row, dtype=np.uint8).reshape(self.size, self.size, 3).copy()
        image = self._decode(index)
        self._store(index, image)
        return image

    def _store(self, index: int, image: np.ndarray) -> None:
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            return  # not what the cache holds; the caller still gets its image
        try:
            with open(self.values_path, "r+b") as handle:
                os.pwrite(
                    handle.fileno(), np.ascontiguousarray(image).tobytes(), self._offset + index * self._row_bytes
                )
            with open(self.filled_path, "r+b") as flags:
                os.pwrite(flags.fileno(), b"\x01", index)
        except OSError as exc:  # a full disk or a removed cache costs speed, never the image
            log.warning("could not store image %d in the decoded-image cache: %s", index, exc)
