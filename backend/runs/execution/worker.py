"""Execute one stored run (a correction or an analysis job): in a worker process of the local executor
(`python -m backend.runs.execution.worker`) or inside a Ray task. The run's status, progress, metric history, error and
outputs all go to the run store; a heartbeat thread keeps the run alive in the store and picks up cancellation
requests."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import traceback

from backend.errors import Cancelled
from backend.progress import ProgressEvent
from backend.runs.execution.dispatch import dispatch, max_cpu_jobs, pid_alive
from backend.runs.execution.store import FINAL_STATUSES, RunStore
from backend.runs.jobs.analysis import ANALYSIS_KIND, AnalysisJob, run_analysis_job
from backend.runs.jobs.correction import CorrectionJob, run_correction_job

__all__ = ["HEARTBEAT_SECONDS", "execute_run"]

HEARTBEAT_SECONDS = 1.0
# A worker runs at a lower CPU priority than the dashboard (see `_lower_priority`): on a laptop's two cores, a page
# that computes a grid's heatmaps while an analysis job works through the split would otherwise get half the CPU.
WORKER_NICENESS = 10
_CANCEL_GRACE_SECONDS = 2.0


def execute_run(workspace: str, run_id: str, *, hard_cancel: bool = False) -> str:
    """Run `run_id` to its end and return its final status. With `hard_cancel` (own process), a run that does not
    stop within a grace period of its cancellation is marked cancelled and the process exits."""
    store = RunStore(workspace)
    record = store.get(run_id)
    if record.status in FINAL_STATUSES or not store.mark_running(run_id, os.getpid()):
        return store.get(run_id).status  # finished before its worker got going: the first word stands
    run_dir = store.run_dir(run_id)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("backend")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    cancel, stop = threading.Event(), threading.Event()

    def heartbeat() -> None:
        asked_at = None
        while not stop.wait(HEARTBEAT_SECONDS):
            if store.beat(run_id) and not cancel.is_set():
                cancel.set()
                asked_at = time.time()
            if hard_cancel and asked_at and time.time() - asked_at > _CANCEL_GRACE_SECONDS:
                store.finish(run_id, "cancelled", message="cancelled (stopped by its worker)")
                os._exit(0)

    def on_progress(event: ProgressEvent) -> None:
        store.add_metrics(
            run_id,
            event.step,
            event.metrics if event.stage == "epoch" else None,  # the loss history holds epochs only
            progress=event.fraction,
            message=event.message or f"{event.stage} {event.step}/{event.total}",
        )

    beating = threading.Thread(target=heartbeat, name=f"heartbeat-{run_id}", daemon=True)
    beating.start()
    try:
        if record.kind == ANALYSIS_KIND:
            job = AnalysisJob.from_dict(record.config)
            logger.info("analysis %s: %s", run_id, job.to_dict())
            summary = run_analysis_job(job, workspace=workspace, on_progress=on_progress, cancel=cancel)
            outputs = {"log": str(run_dir / "run.log")}
        else:
            job = CorrectionJob.from_dict(record.config)
            logger.info("run %s: %s", run_id, job.to_dict())
            result = run_correction_job(job, workspace=workspace, on_progress=on_progress, cancel=cancel)
            summary = result.to_dict()
            outputs = result.outputs.to_dict() | {"log": str(run_dir / "run.log")}
        store.finish(run_id, "succeeded", result=summary, outputs=outputs, progress=1.0, message="done")
    except Cancelled as exc:
        store.finish(run_id, "cancelled", message=str(exc), outputs={"log": str(run_dir / "run.log")})
    except Exception as exc:  # noqa: BLE001 - every failure must reach the store with its traceback
        logger.exception("run %s failed", run_id)
        store.finish(
            run_id,
            "failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            outputs={"log": str(run_dir / "run.log")},
        )
    finally:
        stop.set()
        beating.join(timeout=5)
        logger.removeHandler(handler)
        handler.close()
    return store.get(run_id).status


def _lower_priority() -> None:
    """Run below the dashboard. The worker leads a session of its own, and Linux's autogroup scheduler shares the
    CPU between sessions first: niceness alone then weighs only within the worker's own group (measured: 24 heatmaps
    of a page took 10-13 s instead of 2.3 s beside a niced worker). So the group's niceness is set too, where the
    kernel has autogroups."""
    os.nice(WORKER_NICENESS)
    try:
        with open("/proc/self/autogroup", "w") as handle:
            handle.write(str(WORKER_NICENESS))
    except OSError:  # no autogroup scheduler (not Linux, or disabled): niceness is enough there
        pass


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m backend.runs.execution.worker", description="execute one stored run"
    )
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args()
    _lower_priority()
    execute_run(args.workspace, args.run_id, hard_cancel=True)
    store = RunStore(args.workspace)
    store.mark_dead(alive=pid_alive)  # a worker that died frees its slot for the queue
    dispatch(store, max_cpu_jobs())  # start what waited for this worker's slot


if __name__ == "__main__":
    main()
