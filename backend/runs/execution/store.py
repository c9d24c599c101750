"""The run store: one SQLite file (WAL mode, no server) under the workspace, shared by the app, the CLI and workers.

Every write is one short IMMEDIATE transaction, so concurrent writers from threads and processes serialise instead
of losing updates; readers never block writers.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ConfigError
from backend.runs.jobs.result import RunResult
from backend.storage import resolve_workspace
from backend.storage.database import connect, create_tables

__all__ = ["RUN_KINDS", "RUN_STATUSES", "FINAL_STATUSES", "STALE_SECONDS", "RunRecord", "RunStore"]

RUN_KINDS = ("correction", "analysis")
RUN_STATUSES = ("queued", "starting", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
STALE_SECONDS = 15.0  # an active run whose worker has not beaten for this long is presumed dead

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sweep_id TEXT,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    device TEXT NOT NULL,
    engine TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    traceback TEXT,
    outputs TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    pid INTEGER,
    slot INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'correction'
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
"""


@dataclass(frozen=True)
class RunRecord:
    """One run as stored. `kind` says what it runs: a correction (`config` is the CorrectionJob as a dict) or an
    analysis (an AnalysisJob); `outputs` maps names to paths."""

    id: str
    name: str
    sweep_id: str | None
    status: str
    config: dict
    device: str
    engine: str
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    progress: float
    message: str
    error: str | None
    traceback: str | None
    outputs: dict
    result: dict | None
    pid: int | None
    slot: int | None
    cancel_requested: bool
    kind: str = "correction"
    history: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"history": list(self.history)}

    @functools.cached_property
    def correction(self) -> RunResult | None:
        """A finished correction run's result, typed (`result` is its stored form); None for other runs."""
        return RunResult.from_dict(self.result) if self.kind == "correction" and self.result else None

    def looks_dead(self, now: float, stale_after: float = STALE_SECONDS) -> bool:
        """Active, but its worker has not beaten for `stale_after` seconds."""
        return self.status in ("starting", "running") and now - (self.heartbeat or self.created) > stale_after


class RunStore:
    """Runs and their metric history in `<workspace>/studio.db`."""

    def __init__(self, workspace: str | os.PathLike | None = None) -> None:
        self.workspace = resolve_workspace(workspace)
        self.path = self.workspace / "studio.db"
        create_tables(self.path, _SCHEMA)
        _add_kind_column(self.path)

    def run_dir(self, run_id: str) -> Path:
        path = self.workspace / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _connect(self):
        return connect(self.path)

    def _write(self):
        return connect(self.path, write=True)

    # -- writing ------------------------------------------------------------------------------------------------

    def create(
        self,
        config: dict,
        *,
        name: str = "",
        sweep_id: str | None = None,
        device: str = "cpu",
        engine: str = "local",
        kind: str = "correction",
    ) -> str:
        if kind not in RUN_KINDS:
            raise ConfigError(f"unknown run kind {kind!r}; choose one of {RUN_KINDS}")
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, name, sweep_id, status, config, device, engine, created, kind) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                (
                    run_id,
                    name or config.get("method", "run"),
                    sweep_id,
                    json.dumps(config),
                    device,
                    engine,
                    time.time(),
                    kind,
                ),
            )
        return run_id

    def claim_next(self, device: str, limit: int, kind: str = "correction") -> tuple[str, int] | None:
        """Atomically move the oldest queued local run of `kind` on `device` to `starting` if fewer than `limit`
        of that kind are active; returns it with a free slot number (the GPU index for CUDA runs)."""
        with self._write() as db:
            slots = {
                r[0]
                for r in db.execute(
                    "SELECT slot FROM runs WHERE device = ? AND kind = ? AND engine = 'local' "
                    "AND status IN ('starting', 'running')",
                    (device, kind),
                )
            }
            if len(slots) >= limit:
                return None
            row = db.execute(
                "SELECT id FROM runs WHERE device = ? AND kind = ? AND engine = 'local' AND status = 'queued' "
                "ORDER BY created, id LIMIT 1",
                (device, kind),
            ).fetchone()
            if row is None:
                return None
            slot = min(set(range(limit)) - slots)
            db.execute(
                "UPDATE runs SET status = 'starting', heartbeat = ?, slot = ? WHERE id = ?",
                (time.time(), slot, row["id"]),
            )
            return row["id"], slot

    def set_fields(self, run_id: str, **fields) -> None:
        if not fields:
            return
        for key in ("outputs", "result", "config"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self._write() as db:
            if db.execute("UPDATE runs SET " + columns + " WHERE id = ?", (*fields.values(), run_id)).rowcount != 1:
                raise ConfigError(f"no run {run_id!r}")

    def finish(self, run_id: str, status: str, **fields) -> bool:
        """Move an unfinished run to a final status; False if it had already finished (the first word stands)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status} is not a final status")
        for key in ("outputs", "result"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        fields |= {"status": status, "finished": time.time()}
        columns = ", ".join(f"{key} = ?" for key in fields)
        placeholders = ", ".join("?" for _ in FINAL_STATUSES)
        with self._write() as db:
            changed = db.execute(
                "UPDATE runs SET " + columns + f" WHERE id = ? AND status NOT IN ({placeholders})",
                (*fields.values(), run_id, *FINAL_STATUSES),
            ).rowcount
        return changed == 1

    def mark_running(self, run_id: str, pid: int) -> bool:
        """Move a run to `running` for its worker; False if it has already finished (e.g. failed as dead while its
        worker was still starting, or cancelled), which the worker must then leave as it is."""
        now = time.time()
        placeholders = ", ".join("?" for _ in FINAL_STATUSES)
        with self._write() as db:
            changed = db.execute(
                "UPDATE runs SET status = 'running', started = ?, heartbeat = ?, pid = ?, message = 'running' "
                f"WHERE id = ? AND status NOT IN ({placeholders})",
                (now, now, pid, run_id, *FINAL_STATUSES),
            ).rowcount
        return changed == 1

    def add_metrics(self, run_id: str, step: int, data: dict | None, progress: float, message: str = "") -> None:
        """Record a step's figures (None: only where the run is) with the run's progress and what it is doing."""
        now = time.time()
        with self._write() as db:
            if data is not None:
                db.execute(
                    "INSERT INTO metrics (run_id, step, data, time) VALUES (?, ?, ?, ?)",
                    (run_id, step, json.dumps(data), now),
                )
            db.execute(
                "UPDATE runs SET progress = ?, message = ?, heartbeat = ? WHERE id = ?",
                (progress, message, now, run_id),
            )

    def beat(self, run_id: str) -> bool:
        """Record a heartbeat; returns whether cancellation was requested."""
        with self._write() as db:
            db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))
            row = db.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def request_cancel(self, run_id: str) -> str:
        """Cancel a queued run at once, flag a running one for its worker; returns the status afterwards."""
        record = self.get(run_id)
        if record.status in FINAL_STATUSES:
            return record.status
        self.set_fields(run_id, cancel_requested=1)
        if record.status == "queued" and self.finish(run_id, "cancelled", message="cancelled before it started"):
            return "cancelled"
        return self.get(run_id).status

    def mark_dead(self, stale_after: float = STALE_SECONDS, alive=None) -> list[str]:
        """Fail active runs whose worker stopped beating (or whose process is gone, per `alive(pid)`)."""
        now = time.time()
        dead = []
        for record in self.list(statuses=("starting", "running"), kinds=RUN_KINDS):
            if record.engine != "local":
                continue
            silent = now - (record.heartbeat or record.created)
            gone = alive is not None and record.pid is not None and not alive(record.pid)
            if record.looks_dead(now, stale_after) or gone:
                reason = (
                    f"worker process {record.pid} is gone"
                    if gone
                    else f"worker stopped responding (no heartbeat for {silent:.0f} s)"
                )
                if self.finish(record.id, "failed", error=f"the run's worker died: {reason}"):
                    dead.append(record.id)
        return dead

    # -- reading ------------------------------------------------------------------------------------------------

    def _record(self, row: sqlite3.Row, history: tuple[dict, ...] = ()) -> RunRecord:
        data = dict(row)
        data["config"] = json.loads(data["config"])
        data["outputs"] = json.loads(data["outputs"] or "{}")
        data["result"] = json.loads(data["result"]) if data["result"] else None
        data["cancel_requested"] = bool(data["cancel_requested"])
        return RunRecord(**data, history=history)

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise ConfigError(f"no run {run_id!r} in {self.path}")
            history = tuple(
                json.loads(r["data"])
                for r in db.execute("SELECT data FROM metrics WHERE run_id = ? ORDER BY step, rowid", (run_id,))
            )
        return self._record(row, history)

    def list(
        self,
        *,
        statuses: tuple[str, ...] | None = None,
        sweep_id: str | None = None,
        kinds: tuple[str, ...] = ("correction",),
    ) -> list[RunRecord]:
        """Runs of `kinds` (corrections unless asked), oldest first, optionally of some statuses or one sweep."""
        query, args = "SELECT * FROM runs", []
        clauses = [f"kind IN ({', '.join('?' for _ in kinds)})"]
        args += list(kinds)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args += list(statuses)
        if sweep_id:
            clauses.append("sweep_id = ?")
            args.append(sweep_id)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created, id", args).fetchall()
        return [self._record(r) for r in rows]


def _add_kind_column(path: Path) -> None:
    """Give a run store made before analysis jobs its `kind` column (every run in it was a correction)."""
    with connect(path) as db:
        columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
    if "kind" not in columns:
        with connect(path, write=True) as db:
            columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            if "kind" not in columns:  # another process may have added it meanwhile
                db.execute("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'correction'")
