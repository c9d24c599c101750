"""Pages before background jobs: while a page computes something a user waits for (a grid page's heatmaps), it holds
a lease file in the workspace, and analysis jobs pause at their next layer (`pause_points`) until no lease is held.
A worker's lower priority (`worker._lower_priority`) leaves a page most of the CPU but not all of it, nor the caches
and memory bandwidth: beside a job computing heatmaps, a page's 24 heatmaps took 2.9 s against 2.4 s alone on the
20,000-image folder, and 2.4-2.5 s with the lease. A lease of a process that died, or one held longer than
`LEASE_SECONDS`, is ignored, so a crashed page never stops a job for long."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn as nn

from backend.runs.execution.dispatch import pid_alive
from backend.storage import resolve_workspace

__all__ = ["LEASE_SECONDS", "foreground_held", "foreground_work", "pause_points", "wait_for_foreground"]

LEASE_SECONDS = 30.0  # a page's heatmaps take seconds; a lease older than this is a page that hung
_POLL_SECONDS = 0.05


def _lease_dir(workspace: str | os.PathLike | None) -> Path:
    path = resolve_workspace(workspace) / "foreground"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def foreground_work(workspace: str | os.PathLike | None = None) -> Iterator[None]:
    """Hold a lease while the block runs: analysis jobs of this workspace pause at their next layer."""
    lease = _lease_dir(workspace) / f"{os.getpid()}-{uuid.uuid4().hex}.lease"
    lease.touch()
    try:
        yield
    finally:
        lease.unlink(missing_ok=True)


def foreground_held(workspace: str | os.PathLike | None = None) -> bool:
    """Whether a live page holds a lease now; removes the leases of processes that died."""
    now = time.time()
    for lease in _lease_dir(workspace).glob("*.lease"):
        try:
            pid, age = int(lease.name.split("-", 1)[0]), now - lease.stat().st_mtime
        except (OSError, ValueError):  # removed meanwhile, or not ours
            continue
        if not pid_alive(pid):
            lease.unlink(missing_ok=True)
        elif age < LEASE_SECONDS:
            return True
    return False


def wait_for_foreground(workspace: str | os.PathLike | None = None, cancel: threading.Event | None = None) -> float:
    """Block while a page holds a lease (a cancellation ends the wait); the seconds waited."""
    start = time.perf_counter()
    while foreground_held(workspace) and not (cancel is not None and cancel.is_set()):
        time.sleep(_POLL_SECONDS)
    return time.perf_counter() - start


@contextlib.contextmanager
def pause_points(module: nn.Module, pause: Callable[[], object], every: float = 0.02) -> Iterator[None]:
    """Call `pause` (at most once per `every` seconds) before each layer of `module` runs forward and whenever this
    thread's backward pass reads a tensor saved for it. A job that holds still for a page then stops within a
    layer's work instead of finishing its batch first (8 heatmaps at 224 px: ~1 s at full speed, several at a
    worker's low priority, all of it competing with the page). Results are unchanged: the hooks only wait."""
    last = [float("-inf")]

    def maybe_pause() -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            pause()

    def unpack(saved: torch.Tensor) -> torch.Tensor:
        maybe_pause()
        return saved

    handles = [layer.register_forward_pre_hook(lambda *_: maybe_pause()) for layer in module.modules()]
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda saved: saved, unpack):
            yield
    finally:
        for handle in handles:
            handle.remove()
