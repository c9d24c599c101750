"""Analysis jobs in the background of the Streamlit server: one thread per key (e.g. model, dataset, class, layer),
shared by every session, with its progress, result or error and a cancel flag, so a page shows progress instead of
blocking and a second visitor joins the running job instead of starting another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from backend.errors import ClarcError
from backend.progress import ProgressEvent

__all__ = ["BackgroundJob", "background_job", "forget_job"]


@dataclass
class BackgroundJob:
    """A job's state as the page reads it: done steps of total in `stage`, the result once finished, or the error."""

    cancel: threading.Event = field(default_factory=threading.Event)
    stage: str = "starting"
    step: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    result: Any = None
    error: str | None = None
    finished: bool = False

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    def report(self, event: ProgressEvent) -> None:
        self.stage, self.step, self.total = event.stage, event.step, event.total


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[Hashable, BackgroundJob]:
    return {}


_LOCK = threading.Lock()


def background_job(key: Hashable, work: Callable[[BackgroundJob], Any]) -> BackgroundJob:
    """The job under `key`: the one running or finished (failed ones too, until `forget_job`), else started now
    in a thread; `work(job)` reports progress through `job.report` and checks `job.cancel`."""
    jobs = _jobs()
    with _LOCK:
        if key in jobs:
            return jobs[key]
        job = jobs[key] = BackgroundJob()

    def run() -> None:
        try:
            job.result = work(job)
        except ClarcError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001  (a background thread must report, not die silently)
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = True

    threading.Thread(target=run, name=f"clarc-job-{hash(key) & 0xFFFF:04x}", daemon=True).start()
    return job


def forget_job(key: Hashable) -> None:
    """Drop a finished job, so the next `background_job` call starts it again (after an error or a cancel)."""
    with _LOCK:
        job = _jobs().get(key)
        if job is not None and job.finished:
            del _jobs()[key]
