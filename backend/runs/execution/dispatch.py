"""Starting local worker processes: claim queued runs while there are free slots (one per GPU, a configured number
on the CPU) and spawn `python -m backend.runs.execution.worker` for each. Executors call it on submit and recovery;
a worker calls it when its run ends, so queued runs start without anything else staying up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from backend.runs.execution.store import RunStore

__all__ = ["MAX_CPU_JOBS_ENV", "dispatch", "max_cpu_jobs", "pid_alive"]

MAX_CPU_JOBS_ENV = "CLARC_MAX_CPU_JOBS"
_CPU_ANALYSES = 2  # analysis jobs at once on the CPU
_ROOT = Path(__file__).resolve().parents[3]  # the repository, where `backend` is


def max_cpu_jobs() -> int:
    """Local CPU runs at once: `$CLARC_MAX_CPU_JOBS`, default 1."""
    return int(os.environ.get(MAX_CPU_JOBS_ENV, "1"))


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def dispatch(store: RunStore, cpu_jobs: int) -> list[str]:
    """Start queued runs while there is room: corrections one per GPU and `cpu_jobs` on the CPU; analysis jobs (a
    page waits for them) in slots of their own, one per GPU and two on the CPU (Setup's test split and Explore's
    training split progress together), so a long correction never holds a page up. Returns the started run ids."""
    started = []
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    limits = {("cpu", "correction"): cpu_jobs, ("cuda", "correction"): gpus, ("cpu", "analysis"): _CPU_ANALYSES}
    limits[("cuda", "analysis")] = gpus
    for (device, kind), limit in limits.items():
        while limit and (claimed := store.claim_next(device, limit, kind)):
            run_id, slot = claimed
            _spawn(store, run_id, device, slot, cpu_jobs)
            started.append(run_id)
    return started


def _spawn(store: RunStore, run_id: str, device: str, slot: int, cpu_jobs: int) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
        **{MAX_CPU_JOBS_ENV: str(cpu_jobs)},
    )
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    log = open(store.run_dir(run_id) / "worker.log", "ab")
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.runs.execution.worker",
                "--workspace",
                str(store.workspace),
                "--run-id",
                run_id,
            ],
            cwd=_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()
    store.set_fields(run_id, pid=process.pid)
