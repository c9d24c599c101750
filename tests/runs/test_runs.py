"""Runs with real worker processes and a real SQLite file: lifecycle, failure, cancellation, dead workers,
concurrent submissions, sweeps, and the executor's overhead."""

import json
import os
import signal
import threading
import time

from backend.correction import LoopConfig
from backend.runs import (
    ConceptSpec,
    CorrectionJob,
    LocalExecutor,
    RunStore,
    pareto_front,
    run_correction_job,
    submit_sweep,
    sweep_summary,
)
from tests.conftest import SMALL_SPEC, run_backend


def _job(**overrides) -> CorrectionJob:
    base = dict(out="", dataset=SMALL_SPEC, loop=LoopConfig(epochs=2, device="cpu"))
    return CorrectionJob(**(base | overrides))


def _wait_for(predicate, timeout: float, poll: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out")


def test_submit_runs_in_a_worker_process_and_succeeds_with_metrics(tmp_path):
    executor = LocalExecutor(tmp_path)
    run_id = executor.submit(_job(loop=LoopConfig(epochs=8, device="cpu")), name="lifecycle")
    seen = {executor.store.get(run_id).status}
    while (status := executor.store.get(run_id).status) not in ("succeeded", "failed"):
        seen.add(status)
        time.sleep(0.05)
    record = executor.store.get(run_id)
    assert "running" in seen and record.status == "succeeded", record.error
    assert record.pid and record.pid != os.getpid()  # not the caller's process
    assert len(record.history) == 8 and record.progress == 1.0
    assert record.result["after"]["attacked_acc"] is not None
    assert os.path.exists(record.outputs["checkpoint"]) and os.path.exists(record.outputs["log"])
    assert record.started <= record.finished and record.name == "lifecycle"


def test_a_run_that_raises_is_failed_with_its_message(tmp_path):
    executor = LocalExecutor(tmp_path)
    run_id = executor.submit(_job(concepts=(ConceptSpec(labels=str(tmp_path / "missing.csv")),)))
    record = executor.wait([run_id], timeout=120)[0]
    assert record.status == "failed"
    assert "cannot read concept labels" in record.error and "Traceback" in record.traceback


def test_cancel_stops_a_running_run_within_5_seconds(tmp_path):
    executor = LocalExecutor(tmp_path)
    run_id = executor.submit(_job(loop=LoopConfig(epochs=100000, device="cpu")))
    _wait_for(lambda: executor.store.get(run_id).history, timeout=120)  # training is under way
    asked = time.time()
    executor.cancel(run_id)
    _wait_for(lambda: executor.store.get(run_id).status == "cancelled", timeout=5)
    assert time.time() - asked <= 5


def test_cancel_of_a_queued_run_is_immediate(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(_job().to_dict())
    assert store.request_cancel(run_id) == "cancelled"


def test_killed_worker_is_marked_failed_on_restart_and_nothing_else_is_lost(tmp_path):
    executor = LocalExecutor(tmp_path)
    done = executor.submit(_job(), name="kept")
    executor.wait([done], timeout=120)
    victim = executor.submit(_job(loop=LoopConfig(epochs=100000, device="cpu")), name="victim")
    record = _wait_for(lambda: (r := executor.store.get(victim)).history and r, timeout=120)
    os.kill(record.pid, signal.SIGKILL)
    time.sleep(0.5)
    restarted = LocalExecutor(tmp_path)  # a new app or CLI start
    after = restarted.store.get(victim)
    assert after.status == "failed" and "worker" in after.error and "gone" in after.error
    kept = restarted.store.get(done)
    assert kept.status == "succeeded" and kept.result is not None and len(kept.history) == 2
    assert len(after.history) >= 1  # metrics written before the kill survive


def test_twelve_concurrent_submissions_from_four_threads(tmp_path):
    executor = LocalExecutor(tmp_path, max_cpu_jobs=2)
    ids, errors = [], []
    lock = threading.Lock()

    def submit_three():  # each run is a worker process that imports torch (~4 s): 12 of them, not more
        try:
            for _ in range(3):
                missing = ConceptSpec(labels=str(tmp_path / "missing.csv"))
                run_id = executor.submit(_job(concepts=(missing,)))  # fails fast in its worker
                with lock:
                    ids.append(run_id)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submit_three) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 12
    records = executor.wait(ids, timeout=300)
    assert len(executor.store.list()) == 12
    assert all(r.status == "failed" and "cannot read concept labels" in r.error for r in records)


def test_a_four_point_lambda_sweep_marks_the_pareto_best(tmp_path):
    executor = LocalExecutor(tmp_path)
    sweep_id, run_ids = submit_sweep(executor, _job(), [1e2, 1e4, 1e5, 1e6])
    assert len(run_ids) == 4
    executor.wait(run_ids, timeout=600)
    rows = sweep_summary(executor.store, sweep_id)
    assert sorted(r["lam"] for r in rows) == [1e2, 1e4, 1e5, 1e6]
    assert all(r["status"] == "succeeded" for r in rows)
    assert any(r["pareto"] for r in rows)
    points = [(r["clean_acc"], r["attacked_acc"]) for r in rows]
    assert [r["pareto"] for r in rows] == pareto_front(points)


def test_pareto_front_against_a_hand_made_example():
    assert pareto_front([(0.9, 0.5), (0.8, 0.8), (0.85, 0.7), (0.8, 0.6), (0.9, 0.5)]) == [
        True,
        True,
        True,
        False,
        True,
    ]


def test_executor_overhead_is_at_most_20_percent(tmp_path, workspace):
    """The same correction, started the same way (a fresh Python process that loads model and data), directly through
    the CLI and through the store and a worker: the difference is what the run machinery costs."""
    job = CorrectionJob(out=str(tmp_path / "direct"), dataset=SMALL_SPEC, loop=LoopConfig(epochs=5, device="cpu"))
    run_correction_job(job, workspace=workspace)  # warm the caches both paths share
    command = ["correct", "--dataset", SMALL_SPEC, "--epochs", "5", "--device", "cpu", "--out", str(tmp_path / "cli")]
    start = time.perf_counter()
    done = run_backend(*command, timeout=600, shell=True)  # a process of its own, as the executor's worker
    direct = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    executor = LocalExecutor(workspace)
    start = time.perf_counter()
    record = executor.wait([executor.submit(job)], timeout=600, poll=0.05)[0]
    through = time.perf_counter() - start
    assert record.status == "succeeded", record.error
    print(f"direct {direct:.2f} s, through the executor {through:.2f} s ({through / direct:.2f}x)")
    assert through <= 1.2 * direct


def test_runs_cli_submit_sweep_list_show_cancel(tmp_path):
    def cli(*args):
        return run_backend("runs", *args, "--workspace", str(tmp_path), timeout=600)

    done = cli("submit", "--dataset", SMALL_SPEC, "--epochs", "2", "--wait", "--json", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    run_id = json.loads((tmp_path / "s.json").read_text())["runs"][0]["id"]
    assert "succeeded" in done.stdout
    done = cli(
        "sweep",
        "--dataset",
        SMALL_SPEC,
        "--epochs",
        "1",
        "--lams",
        "1e3,1e5",
        "--wait",
        "--json",
        str(tmp_path / "w.json"),
    )
    assert done.returncode == 0, done.stderr
    assert "pareto" in done.stdout
    sweep_id = json.loads((tmp_path / "w.json").read_text())["sweep_id"]
    done = cli("list", "--sweep", sweep_id, "--json", str(tmp_path / "l.json"))
    listed = json.loads((tmp_path / "l.json").read_text())
    assert len(listed["runs"]) == 2 and any(row["pareto"] for row in listed["summary"])
    done = cli("show", run_id)
    assert done.returncode == 0 and '"status": "succeeded"' in done.stdout
    done = cli("cancel", run_id)
    assert done.returncode == 0 and "succeeded" in done.stdout  # a finished run stays as it was
    done = cli("show", "no-such-run")
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr


def test_a_job_says_what_it_is_doing_and_how_long_is_left(tmp_path, workspace):
    events = []
    job = CorrectionJob(out=str(tmp_path / "run"), dataset=SMALL_SPEC, loop=LoopConfig(epochs=3, device="cpu"))
    run_correction_job(job, workspace=workspace, on_progress=events.append)
    messages = [e.message for e in events]
    assert messages[:2] == ["loading the model and the data", "fitting the CAV"]
    assert "evaluating the model before the correction" in messages and messages[-1] == "exporting the corrected model"
    epochs = [e for e in events if e.stage == "epoch"]
    assert [e.message.split(" · ")[0] for e in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" left" in e.message for e in epochs)
    overall = [e.fraction for e in events]
    assert overall == sorted(overall) and overall[0] == 0.0 and overall[-1] < 1.0
