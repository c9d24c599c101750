"""Executors: where runs execute. Both write everything into the same run store.

- `LocalExecutor`: worker processes on this machine (never the caller's thread): one run per GPU at a time, CPU runs
  up to `max_cpu_jobs`; the rest wait in the queue. A finishing worker starts the next queued run, so nothing needs
  to stay up. Runs whose worker died are marked failed by `recover()`, which every executor calls on start.
- `RayExecutor`: the same runs as Ray tasks (one GPU each when they ask for CUDA) on a Ray cluster; the tasks write
  to the store themselves, so the workspace must be on a file system the cluster shares.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from backend.device import resolve_device
from backend.errors import ConfigError
from backend.runs.execution.dispatch import dispatch, pid_alive
from backend.runs.execution.dispatch import max_cpu_jobs as default_max_cpu_jobs
from backend.runs.execution.store import FINAL_STATUSES, RunRecord, RunStore
from backend.runs.execution.worker import execute_run
from backend.runs.jobs.analysis import ANALYSIS_KIND, AnalysisJob
from backend.runs.jobs.correction import CorrectionJob

__all__ = ["LocalExecutor", "RayExecutor"]

_ROOT = Path(__file__).resolve().parents[3]  # the repository, where `backend` is


class _Executor:
    engine = "local"

    def __init__(self, workspace=None) -> None:
        self.store = RunStore(workspace)
        self.recover()

    def recover(self) -> list[str]:
        return self.store.mark_dead(alive=pid_alive)

    def _prepare(self, job: CorrectionJob, name: str, sweep_id: str | None) -> str:
        device = resolve_device(job.loop.device).type
        run_id = self.store.create(job.to_dict(), name=name, sweep_id=sweep_id, device=device, engine=self.engine)
        job = replace(job, out=str(self.store.run_dir(run_id) / "model.safetensors"))
        self.store.set_fields(run_id, config=job.to_dict())
        return run_id

    def cancel(self, run_id: str) -> str:
        return self.store.request_cancel(run_id)

    def submit_analysis(self, job: AnalysisJob, *, name: str = "") -> str:
        """Start an analysis job, or join the same job (same config) that is already queued or running."""
        config = job.to_dict()
        for record in self.store.list(statuses=("queued", "starting", "running"), kinds=(ANALYSIS_KIND,)):
            if record.config == config:
                return record.id
        device = resolve_device(job.device).type
        run_id = self.store.create(
            config, name=name or f"analysis of {job.split}", device=device, engine=self.engine, kind=ANALYSIS_KIND
        )
        self._start(run_id)
        return run_id

    def _start(self, run_id: str) -> None:
        raise NotImplementedError

    def wait(self, run_ids: Iterable[str], timeout: float = 3600, poll: float = 0.5) -> list[RunRecord]:
        """Block until the runs have finished (or `timeout` seconds passed); returns their records."""
        run_ids = list(run_ids)
        deadline = time.time() + timeout
        while True:
            records = [self.store.get(r) for r in run_ids]
            if all(r.status in FINAL_STATUSES for r in records) or time.time() > deadline:
                return records
            self.recover()
            time.sleep(poll)


class LocalExecutor(_Executor):
    """Worker processes on this machine."""

    def __init__(self, workspace=None, max_cpu_jobs: int | None = None) -> None:
        self.max_cpu_jobs = max_cpu_jobs or default_max_cpu_jobs()
        if self.max_cpu_jobs < 1:
            raise ConfigError("max_cpu_jobs must be at least 1")
        super().__init__(workspace)

    def recover(self) -> list[str]:
        """Fail runs whose worker died, then start queued runs in the slots they held: a killed worker never
        reaches its own dispatch, so without this its queue would wait forever."""
        dead = super().recover()
        self.dispatch()
        return dead

    def submit(self, job: CorrectionJob, *, name: str = "", sweep_id: str | None = None) -> str:
        run_id = self._prepare(job, name, sweep_id)
        self._start(run_id)
        return run_id

    def _start(self, run_id: str) -> None:
        self.dispatch()

    def dispatch(self) -> list[str]:
        """Start queued runs while there is room: one per GPU, `max_cpu_jobs` on the CPU."""
        return dispatch(self.store, self.max_cpu_jobs)


def _ray_task(workspace: str, run_id: str) -> str:
    return execute_run(workspace, run_id)


class RayExecutor(_Executor):
    """Runs as Ray tasks on the cluster at `address` (e.g. "127.0.0.1:6379" or "ray://head:10001")."""

    engine = "ray"

    def __init__(self, address: str, workspace=None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the Ray engine needs ray: pip install -r requirements-ray.txt") from exc
        super().__init__(workspace)
        self._ray = ray
        if not ray.is_initialized():
            ray.init(
                address=address,
                runtime_env={"env_vars": {"PYTHONPATH": str(_ROOT)}},
                include_dashboard=False,
                log_to_driver=False,
            )
        self._remote = ray.remote(_ray_task)
        self._refs: dict[str, object] = {}

    def submit(self, job: CorrectionJob, *, name: str = "", sweep_id: str | None = None) -> str:
        run_id = self._prepare(job, name, sweep_id)
        self._start(run_id)
        return run_id

    def _start(self, run_id: str) -> None:
        gpus = 1 if self.store.get(run_id).device == "cuda" else 0
        self._refs[run_id] = self._remote.options(num_gpus=gpus, num_cpus=1, max_retries=0).remote(
            str(self.store.workspace), run_id
        )

    def cancel(self, run_id: str) -> str:
        status = super().cancel(run_id)
        if status not in FINAL_STATUSES and run_id in self._refs:
            time.sleep(2.0)  # give the task its cooperative stop first
            if self.store.get(run_id).status not in FINAL_STATUSES:
                self._ray.cancel(self._refs[run_id], force=True)
                self.store.finish(run_id, "cancelled", message="cancelled (Ray task stopped)")
        return self.store.get(run_id).status
