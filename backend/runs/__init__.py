"""Runs: correction jobs in the background, persisted in the workspace's SQLite store, on local worker processes or
a Ray cluster, alone or as sweeps."""

from backend.runs.executor import LocalExecutor, RayExecutor, pid_alive
from backend.runs.store import FINAL_STATUSES, RUN_STATUSES, RunRecord, RunStore
from backend.runs.sweep import pareto_front, submit_sweep, sweep_summary

__all__ = [
    "FINAL_STATUSES",
    "LocalExecutor",
    "RUN_STATUSES",
    "RayExecutor",
    "RunRecord",
    "RunStore",
    "pareto_front",
    "pid_alive",
    "submit_sweep",
    "sweep_summary",
]
