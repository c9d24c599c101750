"""The workspace database, `<workspace>/studio.db` (annotations and runs): a fresh connection per operation, because
the dashboard's threads and the workers' processes all use it; WAL, a busy timeout and full sync for durability;
writes in one IMMEDIATE transaction each, rolled back on any error."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["connect", "create_tables"]

_TIMEOUT_S = 30.0  # how long a connection waits for another one's write lock


def create_tables(path: Path, schema: str) -> None:
    """Switch the database to WAL and create `schema`'s tables (statements with IF NOT EXISTS) in one transaction."""
    with connect(path) as db:
        deadline = time.monotonic() + _TIMEOUT_S
        # Journal-mode statements skip the busy handler (e.g. while another process recovers the WAL of a killed
        # writer): retry them until the timeout. The switch itself is needed once per file.
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    break
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    with connect(path, write=True) as db:
        for statement in filter(str.strip, schema.split(";")):
            db.execute(statement)


@contextmanager
def connect(path: Path, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection with rows addressable by column name; `write` wraps the block in one transaction."""
    db = sqlite3.connect(path, timeout=_TIMEOUT_S, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA synchronous=FULL")
        if write:
            db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if write:
            db.execute("COMMIT")
    finally:
        db.close()
