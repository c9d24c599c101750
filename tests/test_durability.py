"""Faults never lose work: real writer processes and real run workers SIGKILLed at random moments, on real SQLite.

Annotation writers print `try` before and `ack` after every store call. After the kills, a fresh store must hold
every acknowledged write; the only extra write allowed is the one call per writer that was in flight (committed,
but killed before its acknowledgement reached us). Killed run workers must leave their run failed with a message
saying the worker is gone, never `running`, and must not disturb other runs or their metric history.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from backend.correction import LoopConfig
from backend.runs import FINAL_STATUSES, CorrectionJob, LocalExecutor
from backend.storage import AnnotationStore
from tests.conftest import ROOT, SMALL_SPEC

# argv: workspace dataset concept tag shared-sample-ids(json) count(0: until killed) seed
# Every call writes the writer's own marker sample `<tag>_<i>` (so every call makes one batch, named by `source`) and,
# for "two sessions on the same samples", a random label for each shared sample.
_LABEL_WRITER = r"""
import json, random, sys
from backend.storage import AnnotationStore
ws, dataset, concept, tag, shared, count, seed = sys.argv[1:8]
shared, count, rng = json.loads(shared), int(count), random.Random(seed)
store = AnnotationStore(ws)
print("ready", flush=True)
i = 0
while count == 0 or i < count:
    sid = f"{tag}_{i}"
    labels = {sid: i % 2} | {s: rng.randint(0, 1) for s in shared}
    print("try", sid, json.dumps(labels), flush=True)
    store.set_labels(dataset, concept, labels, source=sid)
    print("ack", sid, i % 2, flush=True)
    i += 1
"""

# argv: workspace dataset seed. Multi-label batches over two concepts (labels set, changed or removed) mixed with
# undo, on a dataset of its own, so the test can replay the acknowledged calls exactly.
_UNDO_WRITER = r"""
import json, random, sys
from backend.storage import AnnotationStore
ws, dataset, seed = sys.argv[1:4]
rng = random.Random(seed)
store = AnnotationStore(ws)
print("ready", flush=True)
pool = [f"u{j}" for j in range(8)]
while True:
    if rng.random() < 0.3:
        op = {"kind": "undo"}
    else:
        labels = {sid: rng.choice([0, 1, None]) for sid in rng.sample(pool, rng.randint(1, 4))}
        op = {"kind": "set", "concept": rng.choice(["ruler", "skin marker"]), "labels": labels}
    print("try", json.dumps(op), flush=True)
    if op["kind"] == "undo":
        store.undo(dataset)
    else:
        store.set_labels(dataset, op["concept"], op["labels"])
    print("ack", flush=True)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_at_random(procs: list[subprocess.Popen], rng: random.Random) -> list[tuple[str, int]]:
    """SIGKILL each process 0.2-1.5 s after it is ready (its imports done, so that a slow machine does not shrink
    the window of writes); their (stdout, return code)."""
    for proc in procs:
        proc.stdout.readline()  # "ready" ("" if it died first: the return code says so below)
    start = time.monotonic()
    for delay, proc in sorted(((rng.uniform(0.2, 1.5), p) for p in procs), key=lambda pair: pair[0]):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
    outputs = []
    for proc in procs:  # read through the file objects: communicate() would skip what readline() buffered
        out, err = proc.stdout.read(), proc.stderr.read()
        outputs.append((out, err, proc.wait(timeout=30)))
    assert all(code == -signal.SIGKILL for _, _, code in outputs), [err for _, err, _ in outputs]  # none crashed
    return [(out, code) for out, _, code in outputs]


def _integrity_ok(workspace: Path) -> None:
    with sqlite3.connect(workspace / "studio.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class _Ledger:
    """What label writers tried and what the store acknowledged, per writer session."""

    def __init__(self) -> None:
        self.tried: dict[str, dict] = {}
        self.acked: set[str] = set()
        self.in_flight: list[set[str]] = []

    def add(self, stdout: str) -> int:
        """Read one session's output; returns how many calls it had acknowledged."""
        tried, acked = [], set()
        for line in stdout.splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "try" and len(parts) == 3:
                try:
                    self.tried[parts[1]] = json.loads(parts[2])
                except json.JSONDecodeError:  # cut off by the kill: that call cannot have started
                    continue
                tried.append(parts[1])
            elif parts[0] == "ack" and len(parts) == 3:
                acked.add(parts[1])
        assert len(set(tried) - acked) <= 1  # a writer has one call in flight at most
        self.acked |= acked
        self.in_flight.append(set(tried) - acked)
        return len(acked)

    def check(self, workspace: Path, dataset: str, concept: str) -> None:
        """A fresh store holds every acknowledged write, nothing never tried, at most the in-flight call extra per
        session, and exactly the labels that replaying the committed calls in commit order gives (last writer
        wins)."""
        _integrity_ok(workspace)
        store = AnnotationStore(workspace)
        with sqlite3.connect(store.path) as db:
            committed = [
                row[0]
                for row in db.execute(
                    "SELECT source FROM annotation_batches WHERE dataset_id = ? ORDER BY id", (dataset,)
                )
            ]
        assert len(committed) == len(set(committed))
        assert self.acked <= set(committed), sorted(self.acked - set(committed))[:5]
        assert set(committed) <= set(self.tried)
        assert set(committed) - self.acked <= set().union(*self.in_flight)  # at most the call in flight
        expected: dict[str, int] = {}
        for source in committed:
            expected |= self.tried[source]
        assert store.labels(dataset, concept) == expected


class _UndoModel:
    """The label state and open batches that a sequence of set_labels/undo calls must leave (a slow reference)."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, str], int] = {}
        self.batches: list[list[tuple[tuple[str, str], int | None]]] = []

    def copy(self) -> _UndoModel:
        other = _UndoModel()
        other.labels, other.batches = dict(self.labels), [list(b) for b in self.batches]
        return other

    def _put(self, key, value) -> None:
        if value is None:
            self.labels.pop(key, None)
        else:
            self.labels[key] = value

    def apply(self, op: dict) -> None:
        if op["kind"] == "undo":
            for key, old in self.batches.pop() if self.batches else ():
                self._put(key, old)
            return
        new = {(op["concept"], sid): v for sid, v in op["labels"].items()}
        changes = [(key, v) for key, v in new.items() if self.labels.get(key) != v]
        if changes:
            self.batches.append([(key, self.labels.get(key)) for key, _ in changes])
            for key, value in changes:
                self._put(key, value)

    @staticmethod
    def stored(workspace: Path, dataset: str) -> tuple[dict, int]:
        """The labels and the number of batches not undone, as a fresh store has them."""
        store = AnnotationStore(workspace)
        labels = {(c, sid): v for c, rows in store.all_labels(dataset).items() for sid, v in rows.items()}
        with sqlite3.connect(store.path) as db:
            (open_batches,) = db.execute(
                "SELECT COUNT(*) FROM annotation_batches WHERE dataset_id = ? AND undone = 0", (dataset,)
            ).fetchone()
        return labels, open_batches


def _replay_undo_session(model: _UndoModel, stdout: str, workspace: Path, dataset: str) -> tuple[_UndoModel, int]:
    """Replay a killed session's acknowledged calls; the store must match them, or them plus the call in flight."""
    acked, flying = model.copy(), None
    n = 0
    for line in stdout.splitlines():
        if line.startswith("try "):
            try:
                flying = json.loads(line[4:])
            except json.JSONDecodeError:
                flying = None
        elif line == "ack" and flying is not None:
            acked.apply(flying)
            flying, n = None, n + 1
    stored = _UndoModel.stored(workspace, dataset)
    if stored == (acked.labels, len(acked.batches)):
        return acked, n
    assert flying is not None, "acknowledged calls are missing from the store"
    committed = acked.copy()
    committed.apply(flying)
    assert stored == (committed.labels, len(committed.batches)), "neither the acknowledged calls nor them + in flight"
    return committed, n + 1


def test_acknowledged_labels_survive_sigkill_of_concurrent_writers(tmp_path):
    rng = random.Random(20240611)
    AnnotationStore(tmp_path)  # the app created the store before the sessions started
    ledger, model = _Ledger(), _UndoModel()
    acks = undo_acks = 0
    for round_ in range(4):
        writers = [
            _spawn(_LABEL_WRITER, str(tmp_path), "synthderm", "skin marker", f"w{k}r{round_}", "[]", "0", str(k))
            for k in range(3)
        ]
        undoer = _spawn(_UNDO_WRITER, str(tmp_path), "undo-ds", f"{round_}")
        outputs = _kill_at_random([*writers, undoer], rng)
        acks += sum(ledger.add(out) for out, _ in outputs[:3])
        ledger.check(tmp_path, "synthderm", "skin marker")
        model, n = _replay_undo_session(model, outputs[3][0], tmp_path, "undo-ds")
        undo_acks += n
    assert acks > 100 and undo_acks > 20  # the kills landed among many writes, not before the first one

    # after all that, a new writer still writes, and its writes are there
    done = subprocess.run(
        [sys.executable, "-c", _LABEL_WRITER, str(tmp_path), "synthderm", "skin marker", "after", "[]", "25", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert ledger.add(done.stdout) == 25
    ledger.check(tmp_path, "synthderm", "skin marker")
    assert len(AnnotationStore(tmp_path).labels("synthderm", "skin marker")) >= acks + 25


def test_two_sessions_on_the_same_samples_lose_no_acknowledged_write(tmp_path):
    """Two browser sessions label the same five samples at once: last writer (in commit order) wins, and every
    acknowledged call is in the log, through kills at random moments and one uninterrupted round."""
    rng = random.Random(7)
    shared = json.dumps([f"s{j}" for j in range(5)])
    ledger = _Ledger()
    for round_ in range(3):
        sessions = [
            _spawn(_LABEL_WRITER, str(tmp_path), "synthderm", "ruler", f"b{k}r{round_}", shared, "0", f"{k}{round_}")
            for k in range(2)
        ]
        for out, _ in _kill_at_random(sessions, rng):
            ledger.add(out)
        ledger.check(tmp_path, "synthderm", "ruler")
    sessions = [
        _spawn(_LABEL_WRITER, str(tmp_path), "synthderm", "ruler", f"b{k}end", shared, "60", f"end{k}")
        for k in range(2)
    ]
    for proc in sessions:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert ledger.add(out) == 60
    ledger.check(tmp_path, "synthderm", "ruler")
    assert not ledger.in_flight[-1] and not ledger.in_flight[-2]


def _job(epochs: int) -> CorrectionJob:
    return CorrectionJob(out="", dataset=SMALL_SPEC, loop=LoopConfig(epochs=epochs, device="cpu"))


def _wait_for(predicate, timeout: float, poll: float = 0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)
    raise AssertionError("timed out")


def test_run_workers_killed_at_random_points_end_failed_and_spare_the_rest(tmp_path):
    rng = random.Random(3)
    executor = LocalExecutor(tmp_path)  # one CPU run at a time: the others wait in the queue
    kept_id = executor.submit(_job(2), name="kept")
    kept = executor.wait([kept_id], timeout=120, poll=0.05)[0]
    assert kept.status == "succeeded", kept.error

    # where each worker dies: in interpreter start-up, somewhere while loading, or during the epochs
    points = ["start-up", "loading", "epochs", "epochs"]
    victims: dict[str, tuple] = {}
    behind = None
    for i, point in enumerate(points):
        run_id = executor.submit(_job(100000), name=f"victim {point}")
        if i == 0:
            behind = executor.submit(_job(1), name="queued behind a victim")
            assert executor.store.get(behind).status == "queued"
        # the worker's pid is recorded as it starts (by this executor, or by the worker that just freed the slot
        # and dispatched the queue itself)
        record = _wait_for(lambda run_id=run_id: (r := executor.store.get(run_id)).pid and r, timeout=10)
        if point == "loading":
            time.sleep(rng.uniform(0.3, 2.0))
        elif point == "epochs":
            _wait_for(lambda run_id=run_id: executor.store.get(run_id).history, timeout=120)
            time.sleep(rng.uniform(0.0, 0.5))
        seen = executor.store.get(run_id)
        os.kill(record.pid, signal.SIGKILL)
        killed = time.time()
        # a new app or CLI start (and every poll of a waiting one) recovers: failed, never running forever
        after = _wait_for(
            lambda run_id=run_id: (r := LocalExecutor(tmp_path).store.get(run_id)).status in FINAL_STATUSES and r,
            timeout=10,
        )
        assert time.time() - killed < 10
        assert after.status == "failed", (point, after.status, after.error)
        assert "worker" in after.error and "gone" in after.error, after.error
        assert after.history[: len(seen.history)] == seen.history  # metrics written before the kill survive
        victims[run_id] = (point, after)
        if i == 0:
            # the queued run takes the dead worker's slot instead of waiting for a dispatch that never comes
            done = executor.wait([behind], timeout=120, poll=0.05)[0]
            assert done.status == "succeeded", (done.status, done.error)

    _integrity_ok(tmp_path)
    store = LocalExecutor(tmp_path).store
    assert len(store.list()) == len(points) + 2
    assert not store.list(statuses=("queued", "starting", "running"))
    now = store.get(kept_id)
    assert now.status == "succeeded" and now.result == kept.result and now.history == kept.history
    assert len(now.history) == 2 and Path(now.outputs["checkpoint"]).is_file()
    for run_id, (point, after) in victims.items():
        assert store.get(run_id).to_dict() == after.to_dict(), point
    assert sum(bool(after.history) for _, after in victims.values()) >= 2
