"""File helpers every store and cache shares: atomic writes (a crash never leaves a half-written file that looks
complete) and digests of id lists."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "csv_text", "digest_lines"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; on success it becomes `path` in one rename (fsynced
    first when `durable`), on error it is removed. The temporary name keeps `path`'s suffix, so writers that
    append one (numpy) write exactly there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # an ordinary file, not mkstemp's owner-only one
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically (and durably by default); returns the path."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def digest_lines(lines: Iterable[str]) -> str:
    """SHA-1 of lines joined by newlines: a compact fingerprint of an ordered list of sample ids."""
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def csv_text(rows) -> str:
    r"""CSV text with "\n" line ends in which every field holding "\r" or "\n" is quoted, so that it reads back exactly.

    csv.writer quotes only the characters of its own line terminator: with "\n", a "\r" inside a sample id (a file
    name may hold one) was written bare and split the row on reading. Each row is written with "\r\n" (which quotes
    both) and ended with "\n" instead, so files without such characters stay byte for byte what they were.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2] + "\n")
    return "".join(lines)
