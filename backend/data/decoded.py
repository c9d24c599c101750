"""The decoded-image cache of file datasets: every image decoded and resized once per (file list, size) into a row
cache of uint8 images (N, size, size, 3), so epochs and analyses never decode a JPEG twice.

The key covers each file's id, byte size and modification time: a changed, added or removed file makes a new cache
(the old one stays in `<workspace>/cache/decoded` until deleted). Rows are read and written with file I/O, not a
memory map, so reading a 25,000-image split keeps no image in the process's memory; processes share the cache safely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from backend.storage import CacheKey, RowCache, digest_lines

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
    return CacheKey("decoded", samples=digest_lines(lines), version=_VERSION, extra={"size": size}).digest()


class DecodedImages:
    """Images (N, size, size, 3) uint8 of one file list, decoded by `decode(i)` on first access and read back from
    the row cache `<root>/<key>` after."""

    def __init__(self, root: Path, key: str, n: int, size: int, decode: Callable[[int], np.ndarray]) -> None:
        self.n, self.size, self._decode = n, size, decode
        self._rows = RowCache(root / key, (n, size, size, 3), np.uint8)

    def filled(self) -> np.ndarray:
        """Which rows hold their image (N,) bool."""
        found = self._rows.filled()
        return np.zeros(self.n, dtype=bool) if found is None else found

    def __call__(self, index: int) -> np.ndarray:
        """Image `index` (size, size, 3) uint8: from the cache, else decoded and stored."""
        found, image = self._rows.fetch([index])
        if found[0]:
            return image[0]
        image = self._decode(index)
        if image.shape == (self.size, self.size, 3) and image.dtype == np.uint8:  # else not what the cache holds
            try:
                self._rows.write([index], image[None])
            except OSError as exc:  # a full disk or a removed cache costs speed, never the image
                log.warning("could not store image %d in the decoded-image cache: %s", index, exc)
        return image
