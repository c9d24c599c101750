"""The one training core of the base classifier and of every correction: the optimiser choice, the epoch loop with its
progress events, the cancellation flag, bf16 autocast on CUDA and the divergence guard.

Plumbing (it imports only torch and the plumbing modules), so that `backend.training` and `backend.correction` both
build on it. A client writes one epoch (`run_epoch`) with `batches`, `autocast` and `step`; `fit` runs the epochs.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Literal, TypeVar

import torch
import torch.nn as nn

from backend.errors import Cancelled, ClarcError, ConfigError
from backend.progress import ProgressCallback, ProgressEvent

__all__ = ["OptimizerName", "Trainer", "TrainingCancelled", "TrainingDiverged", "make_optimizer"]

log = logging.getLogger(__name__)
OptimizerName = Literal["adamw", "adam", "sgd"]
_T = TypeVar("_T")


class TrainingCancelled(Cancelled):
    """A training stopped through its cancellation flag."""


class TrainingDiverged(ClarcError):
    """A non-finite loss; `module` is back in the last good state (before the failing epoch), in eval mode."""

    def __init__(self, message: str, module: nn.Module) -> None:
        super().__init__(message)
        self.module = module


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The optimiser `name`: AdamW, Adam, or SGD with momentum 0.9 (weight decay 0: none)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of adamw, adam, sgd")


class Trainer:
    """One training run of `module` (named `name` in messages and logs): `fit` runs the epochs, keeping the state after
    each as the last good one; an epoch iterates `batches` (which checks the cancellation flag before each), computes
    its loss under `autocast` and calls `step` (divergence guard, zero_grad, backward, optimiser and scheduler step)."""

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        name: str,
        device: torch.device,
        mixed_precision: bool = False,
        cancel: threading.Event | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.module, self.optimizer, self.scheduler, self.name, self.cancel = module, optimizer, scheduler, name, cancel
        self.mixed = device.type == "cuda" and mixed_precision
        self.epoch = 0
        self.good_state = copy.deepcopy(module.state_dict())

    def fit(self, epochs: int, run_epoch: Callable[[int], dict], on_progress: ProgressCallback | None) -> list[dict]:
        """Run `run_epoch(epoch)` (its figures of that epoch) for epochs 1..`epochs`; one history record and one
        progress event ("epoch") per epoch."""
        history = []
        for epoch in range(1, epochs + 1):
            self.epoch = epoch
            record = {"epoch": epoch, **run_epoch(epoch)}
            self.good_state = copy.deepcopy(self.module.state_dict())
            history.append(record)
            log.info("%s epoch %d/%d %s", self.name, epoch, epochs, record)
            if on_progress:
                on_progress(ProgressEvent("epoch", epoch, epochs, record))
        return history

    def batches(self, source: Iterable[_T]) -> Iterator[_T]:
        """The batches of `source`, raising TrainingCancelled before any batch once the cancellation flag is set."""
        for batch in source:
            if self.cancel is not None and self.cancel.is_set():
                raise TrainingCancelled(f"{self.name} cancelled in epoch {self.epoch}")
            yield batch

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on CUDA when mixed precision is on; nothing otherwise (the CPU always trains in fp32)."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.mixed else nullcontext()

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step on `loss`; a non-finite loss restores the last good state and raises TrainingDiverged."""
        if not torch.isfinite(loss):
            self.module.load_state_dict(self.good_state)
            self.module.eval()
            raise TrainingDiverged(
                f"{self.name} diverged in epoch {self.epoch} (loss {loss.item()}); kept the state before that epoch",
                self.module,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
