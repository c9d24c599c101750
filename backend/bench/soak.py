"""`bench soak`: annotation writes and correction runs under injected faults, then a count of what was lost.

Writer processes (`python -m backend.bench.soak --writer SPEC`) label, remove, bulk-label, undo, import (files with
bad rows, unknown ids and duplicates, or corrupt files) and export, printing `try` before and `ack` after every
call; some are SIGKILLed at random moments. Each writer owns a dataset (for undo) and its own samples of a shared
one, so the acknowledged calls replayed on a model give exactly what the store must hold (the one call in flight at
a kill may or may not have committed). Meanwhile quick correction runs go through the local executor, some with
their worker SIGKILLed, a corrupt or missing checkpoint, labels of unknown samples, or a cancellation; each must end
in the final state that is true of it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.options import option, switch

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
_SPEC = "synthderm?n_train=120&n_val=30&n_test=60"
_CONCEPTS = ("ruler", "skin marker", "hair")
_PRIVATE = tuple(f"p{j:02d}" for j in range(40))
_WORDS = {0: ("0", "clean", "no", "false"), 1: ("1", "artifact", "yes", "true")}
_RUN_FAULTS = ("worker_sigkill", "corrupt_checkpoint", "missing_checkpoint", "unknown_label_ids", "cancel")
_STUCK_SECONDS = 120.0  # a quick run that has not finished by then is stuck: cancelled, then its worker killed


@dataclass(frozen=True, kw_only=True)
class SoakBench(BenchOptions):
    """annotation writes and correction runs under injected faults, in a fresh workspace unless --workspace"""

    ops: int | None = option(None, help="annotation operations (default 1000, --quick 150)")
    runs: int | None = option(None, help="correction runs (default 20, --quick 6)")
    seconds: float = option(600, help="stop starting new work after this (default 600)")
    seed: int = option(0, help="random seed of the operations, faults and runs")
    writers: int | None = option(None, help="annotation writer processes (default 4, --quick 3)")
    quick: bool = switch(help="a small soak (150 operations, 6 runs)")
    keep: bool = switch(help="keep the fresh workspace made without --workspace")


# -- the writer process and its operations ---------------------------------------------------------------------


def _own(k: int) -> tuple[str, ...]:
    return tuple(f"k{k}_{j:02d}" for j in range(30))


def _digest(rows) -> str:
    return hashlib.sha256(json.dumps(sorted([c, s, int(v)] for c, s, v in rows)).encode()).hexdigest()[:16]


def _draw_op(rng: random.Random, k: int) -> tuple[dict, str | bytes | None]:
    """The next call of writer `k` as JSON (for the ledger) and, for imports, the file it reads."""
    r, where = rng.random(), rng.choice(("private", "shared"))
    samples = _PRIVATE if where == "private" else _own(k)
    if r < 0.45:  # set one label, remove one, or a bulk batch
        kind = "set" if r < 0.25 else "remove" if r < 0.33 else "bulk"
        chosen = rng.sample(samples, rng.randint(5, 15) if kind == "bulk" else 1)
        values = {"set": (0, 1), "remove": (None,), "bulk": (0, 1, 1, None)}[kind]
        labels = {s: rng.choice(values) for s in chosen}
        return {"kind": kind, "where": where, "concept": rng.choice(_CONCEPTS), "labels": labels}, None
    if r < 0.57:
        return {"kind": "undo", "where": "private"}, None
    if r < 0.72:  # an import with bad rows, unknown ids and a duplicate: the good rows go in as one batch
        concepts, good, rows = rng.sample(_CONCEPTS, 2), {}, []
        for sid in rng.sample(_PRIVATE, rng.randint(3, 10)):
            concept, value = rng.choice(concepts), rng.randint(0, 1)
            good[f"{concept}\t{sid}"] = value
            rows.append([concept, sid, rng.choice(_WORDS[value])])
        unknown = [f"zz{rng.randrange(10**9)}" for _ in range(rng.randint(0, 2))]
        rows += [[rng.choice(concepts), sid, "1"] for sid in unknown]
        rows += [rng.choice(([concepts[0], rng.choice(_PRIVATE), "maybe"], [concepts[1], "", "1"])) for _ in range(2)]
        rng.shuffle(rows)
        first = rng.choice(sorted(good))
        rows.append([*first.split("\t"), str(1 - good[first])])  # a later duplicate: the first row stands
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([["concept", "sample_id", "label"], *rows])
        op = {"kind": "import", "where": "private", "good": good, "unknown": len(set(unknown)), "bad": 2, "dup": 1}
        return op, out.getvalue()
    if r < 0.82:  # a corrupt file: rejected as a whole, nothing written
        variant = rng.choice(("garbage", "malformed", "header", "json"))
        text = {
            "garbage": b"\xff" + rng.randbytes(rng.randint(10, 300)),
            "malformed": f'concept,sample_id,label\nruler,{_PRIVATE[0]},1\nruler,"{_PRIVATE[1]},1\n',
            "header": f"id,value\n{_PRIVATE[0]},1\n",
            "json": '{"concepts": {"ruler": {"p00": 1, ',
        }[variant]
        return {"kind": "corrupt", "where": "private", "variant": variant}, text
    return {"kind": "export", "where": where, "fmt": rng.choice(("csv", "json"))}, None


def _perform(store, op: dict, payload, datasets: dict[str, str], k: int) -> dict:
    """Make one call on the store; what the acknowledgement reports."""
    from backend.errors import ConfigError

    dataset = datasets[op["where"]]
    if op["kind"] in ("set", "remove", "bulk"):
        return {"batch": store.set_labels(dataset, op["concept"], op["labels"], source=op["kind"])}
    if op["kind"] == "undo":
        return {"undone": (store.undo(dataset) or {}).get("batch", 0)}
    if op["kind"] == "import":
        report = store.import_text(dataset, payload.encode(), "csv", known_ids=_PRIVATE)
        counts = (len(report.unknown_ids), len(report.bad_rows), len(report.duplicates))
        return {"imported": report.imported, "report_ok": counts == (op["unknown"], op["bad"], op["dup"])}
    if op["kind"] == "corrupt":
        fmt = "json" if op["variant"] == "json" else "csv"
        try:
            store.import_text(dataset, payload, fmt, known_ids=_PRIVATE, concept="ruler")
        except ConfigError:
            return {"rejected": True}
        return {"rejected": False}
    if op["fmt"] == "csv":
        rows = [
            (r["concept"], r["sample_id"], r["label"]) for r in csv.DictReader(io.StringIO(store.export_csv(dataset)))
        ]
    else:
        data = json.loads(store.export_json(dataset))["concepts"]
        rows = [(c, sid, v) for c, labels in data.items() for sid, v in labels.items()]
    own = set(_own(k))
    return {"digest": _digest([r for r in rows if op["where"] == "private" or r[1] in own])}


def _writer_main(spec: dict) -> None:
    from backend.storage import AnnotationStore

    store, rng = AnnotationStore(spec["workspace"]), random.Random(spec["seed"])
    for _ in range(spec["ops"]):
        op, payload = _draw_op(rng, spec["k"])
        print("try", json.dumps(op), flush=True)
        result = _perform(store, op, payload, spec["datasets"], spec["k"])
        print("ack", json.dumps(result), flush=True)


# -- the ledger: what a writer's acknowledged calls must have left ----------------------------------------------


class _Model:
    """Labels of a writer's own samples (private dataset and its part of the shared one) and its open batches."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, str, str], int] = {}  # (where, concept, sample id) -> label
        self.batches: list[list[tuple[tuple[str, str, str], int | None]]] = []  # private dataset's, not undone

    def copy(self) -> _Model:
        other = _Model()
        other.labels, other.batches = dict(self.labels), [list(b) for b in self.batches]
        return other

    def _change(self, new: dict) -> None:
        diff = {key: value for key, value in new.items() if self.labels.get(key) != value}
        if diff and next(iter(diff))[0] == "private":
            self.batches.append([(key, self.labels.get(key)) for key in diff])
        self._put(diff)

    def _put(self, values: dict) -> None:
        for key, value in values.items():
            if value is None:
                self.labels.pop(key, None)
            else:
                self.labels[key] = value

    def apply(self, op: dict) -> None:
        if op["kind"] in ("set", "remove", "bulk"):
            self._change({(op["where"], op["concept"], sid): v for sid, v in op["labels"].items()})
        elif op["kind"] == "import":
            self._change({("private", *key.split("\t")): v for key, v in op["good"].items()})
        elif op["kind"] == "undo" and self.batches:
            self._put(dict(self.batches.pop()))

    def digest(self, where: str) -> str:
        return _digest([(c, s, v) for (w, c, s), v in self.labels.items() if w == where])

    def state(self) -> tuple[dict, list]:
        return self.labels, [sorted(b, key=str) for b in self.batches]


def _stored(workspace: Path, datasets: dict[str, str], k: int) -> tuple[dict, list]:
    """What a fresh store holds of writer `k`: its labels and its private dataset's open batches (old labels)."""
    from backend.storage import AnnotationStore

    store, own = AnnotationStore(workspace), set(_own(k))
    labels = {}
    for where, dataset in datasets.items():
        for concept, rows in store.all_labels(dataset).items():
            labels |= {(where, concept, s): v for s, v in rows.items() if where == "private" or s in own}
    with sqlite3.connect(store.path) as db:
        rows = db.execute(
            "SELECT b.id, l.concept, l.sample_id, l.old_label FROM annotation_batches b JOIN annotation_log l "
            "ON l.batch = b.id WHERE b.dataset_id = ? AND b.undone = 0 ORDER BY b.id, l.id",
            (datasets["private"],),
        ).fetchall()
    batches: dict[int, list] = {}
    for batch, concept, sid, old in rows:
        batches.setdefault(batch, []).append((("private", concept, sid), old))
    return labels, [sorted(b, key=str) for b in batches.values()]


def _lost(expected: tuple[dict, list], stored: tuple[dict, list]) -> int:
    """Labels that differ, plus open batches (what undo would revert) that differ."""
    labels = sum(expected[0].get(key) != stored[0].get(key) for key in set(expected[0]) | set(stored[0]))
    return labels + sum(a != b for a, b in zip_longest(expected[1], stored[1]))


class _Writer(threading.Thread):
    """Runs writer sessions of one writer until its share of operations is done, killing some at random moments;
    after each session checks the store against the acknowledged calls."""

    def __init__(self, k: int, ops: int, workspace: Path, datasets: dict, seed: int, deadline: float) -> None:
        super().__init__(name=f"soak-writer-{k}", daemon=True)
        self.k, self.ops, self.workspace, self.datasets, self.deadline = k, ops, workspace, datasets, deadline
        self.rng, self.model = random.Random(f"{seed}-writer-{k}"), _Model()
        self.done, self.lost, self.flying_committed = 0, 0, 0
        self.kinds, self.faults, self.anomalies = Counter(), Counter(), Counter()

    def run(self) -> None:
        first = True
        while self.done < self.ops and time.monotonic() < self.deadline:
            spec = {"workspace": str(self.workspace), "datasets": self.datasets, "k": self.k}
            spec |= {"seed": self.rng.randrange(2**32), "ops": min(self.rng.randint(20, 60), self.ops - self.done)}
            out, code, err = self._session(spec, kill_mid_call=first)
            first = False
            if code == -signal.SIGKILL:
                self.faults["writer_sigkill"] += 1
            elif code != 0:
                self.anomalies["writer_errors"] += 1
                log.error("soak writer %d failed: %s", self.k, err[-2000:])
            self._reconcile(out)

    def _session(self, spec: dict, kill_mid_call: bool) -> tuple[str, int, str]:
        """One writer process: SIGKILLed just after it announced a random call, or during its start-up, or left
        alone; its output, return code and error output."""
        command = [sys.executable, "-m", "backend.bench.soak", "--writer", json.dumps(spec)]
        draw, lines = self.rng.random(), []
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(command, cwd=_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
            if kill_mid_call or draw < 0.45:
                target, tries = self.rng.randint(1, max(1, spec["ops"] - 3)), 0
                for line in proc.stdout:
                    lines.append(line)
                    tries += line.startswith("try ")
                    if tries == target:
                        time.sleep(self.rng.uniform(0.0, 0.03))  # before, during or after its commit (~20 ms)
                        proc.send_signal(signal.SIGKILL)
                        break
            elif draw < 0.6:
                time.sleep(self.rng.uniform(0.0, 0.15))
                proc.send_signal(signal.SIGKILL)
            lines.append(proc.stdout.read())
            proc.stdout.close()
            proc.wait()
            err.seek(0)
            return "".join(lines), proc.returncode, err.read()

    def _reconcile(self, out: str) -> None:
        flying = None
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            try:
                data = json.loads(rest)
            except json.JSONDecodeError:  # cut off by the kill
                continue
            if word == "try":
                flying = data
            elif word == "ack" and flying is not None:
                self._acknowledged(flying, data)
                flying = None
        expected, stored = self.model.state(), _stored(self.workspace, self.datasets, self.k)
        if expected != stored and flying is not None:
            committed = self.model.copy()
            committed.apply(flying)
            if committed.state() == stored:  # the call in flight committed; only its acknowledgement was lost
                self.model, self.done, self.flying_committed = committed, self.done + 1, self.flying_committed + 1
                self.kinds[flying["kind"]] += 1
                return
        if expected != stored:
            self.lost += _lost(expected, stored)
            log.error("soak writer %d: the store does not hold its acknowledged writes", self.k)
            self.model.labels, self.model.batches = dict(stored[0]), [list(b) for b in stored[1]]

    def _acknowledged(self, op: dict, result: dict) -> None:
        self.done += 1
        self.kinds[op["kind"]] += 1
        if op["kind"] == "export" and result["digest"] != self.model.digest(op["where"]):
            self.anomalies["exports_wrong"] += 1
        if op["kind"] == "import":
            self.faults["import_bad_rows"] += 1
            self.anomalies["import_reports_wrong"] += not result["report_ok"]
        if op["kind"] == "corrupt":
            self.faults["corrupt_import"] += 1
            self.anomalies["corrupt_imports_accepted"] += not result["rejected"]
        self.model.apply(op)


# -- runs -------------------------------------------------------------------------------------------------------


def _plan_runs(rng: random.Random, n: int) -> list[str]:
    """What happens to each run, shuffled: one of each fault and a clean run in every six, then more clean runs,
    kills and cancellations (20 runs: 6 clean, 4 killed, 4 cancelled, 2 of each corrupt input)."""
    pattern = ("ok", *_RUN_FAULTS, "ok", "worker_sigkill", "ok", "cancel")
    plan = [pattern[i % len(pattern)] for i in range(n)]
    rng.shuffle(plan)
    return plan


def _false_state(kind: str, record) -> str | None:
    """Why a finished run's final state is not the true one for what was done to it; None if it is."""
    from backend.models import load_checkpoint

    error = record.error or ""
    if kind == "worker_sigkill":
        ok = record.status == "failed" and "worker" in error and "gone" in error
    elif kind in ("corrupt_checkpoint", "missing_checkpoint"):
        ok = record.status == "failed" and error.startswith("CheckpointError:") and record.config["checkpoint"] in error
    elif kind == "unknown_label_ids":
        ok = record.status == "failed" and error.startswith("ConfigError:") and "not in the dataset" in error
    elif kind == "cancel":
        ok = record.status == "cancelled"
    elif record.status != "succeeded":
        ok = False
    else:
        try:
            load_checkpoint(record.outputs["checkpoint"])
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            return f"its checkpoint does not load: {exc}"
        ok = True
    return None if ok else f"{record.status}: {error[:200]}"


def _judge(info: dict) -> str | None:
    if info["stuck"]:
        return f"stuck: not finished {_STUCK_SECONDS:.0f} s after it was submitted"
    return _false_state(info["kind"], info["final"]) if info["final"] else "not finished"


class _RunSoak:
    """Submits the planned runs a few at a time, injects their faults, and judges their final states."""

    def __init__(self, workspace: Path, plan: list[str], seed: int, deadline: float, jobs: int) -> None:
        from backend.correction import LoopConfig
        from backend.data import open_dataset
        from backend.runs import ConceptSpec, CorrectionJob, LocalExecutor

        self.executor, self.plan, self.deadline = LocalExecutor(workspace, max_cpu_jobs=jobs), plan, deadline
        self.rng, self.inputs = random.Random(f"{seed}-runs"), workspace / "soak-inputs" / uuid.uuid4().hex[:8]
        self.inputs.mkdir(parents=True)
        self.CorrectionJob, self.ConceptSpec, self.LoopConfig = CorrectionJob, ConceptSpec, LoopConfig
        train_ids = open_dataset(_SPEC, workspace).split("train").sample_ids  # render once, before the workers
        self.known = list(train_ids[:20])
        self.runs: dict[str, dict] = {}
        self.faults, self.kill_points = Counter(), Counter()

    def _job(self, i: int, kind: str):
        from backend.defaults import DEFAULT_CHECKPOINT

        epochs = 100000 if kind in ("worker_sigkill", "cancel") else self.rng.randint(1, 2)
        fields = {"out": "", "dataset": _SPEC, "loop": self.LoopConfig(epochs=epochs, device="cpu")}
        fields["method"] = self.rng.choice(("rrclarc", "finetune"))
        if kind == "corrupt_checkpoint":
            path, data = self.inputs / f"corrupt-{i}.safetensors", DEFAULT_CHECKPOINT.read_bytes()
            cut = self.rng.choice((0, 100, len(data) // 2))
            path.write_bytes(data[:cut] if cut else self.rng.randbytes(4096))
            fields["checkpoint"] = str(path)
        elif kind == "missing_checkpoint":
            fields["checkpoint"] = str(self.inputs / f"missing-{i}.safetensors")
        elif kind == "unknown_label_ids":
            path = self.inputs / f"labels-{i}.csv"
            rows = [(s, self.rng.randint(0, 1)) for s in self.known] + [(f"nope_{i}_{j}", 1) for j in range(3)]
            path.write_text("sample_id,label\n" + "".join(f"{s},{v}\n" for s, v in rows))
            fields["concepts"] = (self.ConceptSpec(labels=str(path)),)
        return self.CorrectionJob(**fields)

    def run(self) -> None:
        store, hard_stop = self.executor.store, None
        pending = list(enumerate(self.plan))
        while pending or any(r["final"] is None for r in self.runs.values()):
            active = [run_id for run_id, r in self.runs.items() if r["final"] is None]
            if time.monotonic() > self.deadline:
                pending = []  # out of time: submit nothing more, and give what runs a grace period
                hard_stop = hard_stop or time.monotonic() + 120
            if pending and len(active) < self.executor.max_cpu_jobs + 1:
                i, kind = pending.pop(0)
                run_id = self.executor.submit(self._job(i, kind), name=f"soak {kind}")
                point = {"worker_sigkill": ("start-up", "loading", "epochs"), "cancel": ("queued", "epochs")}
                self.runs[run_id] = {"kind": kind, "point": self.rng.choice(point.get(kind, ("-",))), "final": None}
                self.runs[run_id] |= {"seen": None, "delay": self.rng.uniform(0.1, 1.5), "done": False}
                self.runs[run_id] |= {"submitted": time.monotonic(), "stuck": False}
                if kind not in ("worker_sigkill", "cancel"):
                    self.faults[kind] += kind != "ok"
                continue
            self.executor.recover()
            for run_id in active:
                record = store.get(run_id)
                info = self.runs[run_id]
                age = time.monotonic() - info["submitted"]
                if record.status in ("succeeded", "failed", "cancelled"):
                    info["final"] = record
                elif age > _STUCK_SECONDS or (hard_stop and time.monotonic() > hard_stop):
                    info["stuck"] |= age > _STUCK_SECONDS
                    self.executor.cancel(run_id)
                    if age > _STUCK_SECONDS + 30 and record.pid:
                        with suppress(ProcessLookupError):
                            os.kill(record.pid, signal.SIGKILL)
                elif not info["done"]:
                    self._inject(run_id, record, info)
            time.sleep(0.1)

    def _inject(self, run_id: str, record, info: dict) -> None:
        now = time.monotonic()
        if info["kind"] == "cancel" and (info["point"] == "queued" or record.history):
            self.executor.cancel(run_id)
            info["done"] = True
            self.faults["cancel"] += 1
            return
        if info["kind"] != "worker_sigkill" or not record.pid:
            return
        if record.status == "running" and info["seen"] is None:
            info["seen"] = now
        due = {
            "start-up": True,
            "loading": info["seen"] is not None and now - info["seen"] > info["delay"],
            "epochs": bool(record.history),
        }[info["point"]]
        if due:
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            info["done"] = True
            self.faults["worker_sigkill"] += 1
            self.kill_points[info["point"]] += 1


# -- the benchmark ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakResult(BenchResult):
    operations: int
    operations_by_kind: dict[str, int]
    writers: int
    faults_injected: dict[str, int]
    acknowledged_writes_lost: int
    in_flight_writes_committed: int
    annotation_anomalies: dict[str, int]
    integrity_check: str
    runs_planned: int
    runs_submitted: int
    runs: dict[str, int]  # final status -> runs
    runs_by_fault: dict[str, dict[str, int]]
    worker_kill_points: dict[str, int]
    runs_in_false_state: int
    false_states: list[dict]  # run_id, fault, why
    seconds: float
    workspace: str | None  # kept: given, or --keep

    def lines(self) -> list[str]:
        def counts(values: dict) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(values.items()))

        return [
            f"soak: {self.operations} annotation operations from {self.writers} writer processes, "
            f"{self.runs_submitted}/{self.runs_planned} runs, {self.seconds:.1f} s",
            "  operations by kind: " + counts(self.operations_by_kind),
            "  faults injected:",
            *(f"    {kind:20s} {n:5d}" for kind, n in self.faults_injected.items()),
            f"  acknowledged writes lost   {self.acknowledged_writes_lost}"
            f" (in-flight writes that committed unacknowledged: {self.in_flight_writes_committed})",
            "  annotation anomalies       " + ", ".join(f"{k} {v}" for k, v in self.annotation_anomalies.items()),
            f"  integrity check            {self.integrity_check}",
            "  runs by final status       " + counts(self.runs),
            *(f"    {kind:20s} " + counts(by_status) for kind, by_status in self.runs_by_fault.items()),
            "  workers killed during      " + counts(self.worker_kill_points),
            f"  runs left in a false state {self.runs_in_false_state}",
            *(f"    {row['run_id']} ({row['fault']}): {row['why']}" for row in self.false_states),
        ]


@register_bench("soak", SoakBench)
def bench_soak(opts: SoakBench) -> SoakResult:
    start = time.monotonic()
    ops = opts.ops if opts.ops is not None else (150 if opts.quick else 1000)
    n_runs = opts.runs if opts.runs is not None else (6 if opts.quick else 20)
    n_writers = opts.writers or (3 if opts.quick else 4)
    from backend.storage import AnnotationStore

    fresh = opts.workspace is None
    workspace = Path(tempfile.mkdtemp(prefix="clarc-soak-") if fresh else opts.workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    deadline = start + opts.seconds
    AnnotationStore(workspace)  # the store exists before the first writer starts
    tag = uuid.uuid4().hex[:6]
    writers = [
        _Writer(
            k,
            ops // n_writers + (k < ops % n_writers),
            workspace,
            {"private": f"soak-{tag}-w{k}", "shared": f"soak-{tag}-shared"},
            opts.seed,
            deadline,
        )
        for k in range(n_writers)
    ]
    for writer in writers:
        writer.start()
    runs = _RunSoak(workspace, _plan_runs(random.Random(opts.seed), n_runs), opts.seed, deadline, jobs=2)
    runs.run()
    for writer in writers:
        writer.join()

    lost = sum(w.lost + _lost(w.model.state(), _stored(workspace, w.datasets, w.k)) for w in writers)  # fresh look
    with sqlite3.connect(workspace / "studio.db") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    false_states = [
        {"run_id": run_id, "fault": info["kind"], "why": why}
        for run_id, info in runs.runs.items()
        if (why := _judge(info))
    ]
    faults = sum((w.faults for w in writers), Counter()) + runs.faults
    anomalies = sum((w.anomalies for w in writers), Counter())
    statuses = Counter(info["final"].status if info["final"] else "unfinished" for info in runs.runs.values())
    by_fault: dict[str, Counter] = {}
    for info in runs.runs.values():
        by_fault.setdefault(info["kind"], Counter())[info["final"].status if info["final"] else "unfinished"] += 1
    result = SoakResult(
        operations=sum(w.done for w in writers),
        operations_by_kind=dict(sum((w.kinds for w in writers), Counter())),
        writers=n_writers,
        faults_injected={kind: faults[kind] for kind in sorted(faults)},
        acknowledged_writes_lost=lost,
        in_flight_writes_committed=sum(w.flying_committed for w in writers),
        annotation_anomalies={
            k: anomalies[k]
            for k in ("writer_errors", "exports_wrong", "import_reports_wrong", "corrupt_imports_accepted")
        },
        integrity_check=integrity,
        runs_planned=n_runs,
        runs_submitted=len(runs.runs),
        runs=dict(statuses),
        runs_by_fault={kind: dict(c) for kind, c in sorted(by_fault.items())},
        worker_kill_points=dict(runs.kill_points),
        runs_in_false_state=len(false_states),
        false_states=false_states,
        seconds=round(time.monotonic() - start, 1),
        workspace=None if fresh and not opts.keep else str(workspace),
    )
    if fresh and not opts.keep:
        shutil.rmtree(workspace, ignore_errors=True)
    return result


if __name__ == "__main__":  # a writer process of the soak
    if len(sys.argv) == 3 and sys.argv[1] == "--writer":
        _writer_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m backend.bench.soak --writer SPEC (started by `python -m backend bench soak`)")
