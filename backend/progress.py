"""Progress reporting for long work: the library calls `on_progress(event)`; the app draws bars, the CLI tqdm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProgressEvent", "ProgressCallback"]


@dataclass(frozen=True)
class ProgressEvent:
    """`step` of `total` in a named `stage` (e.g. "epoch"), with the latest figures of that step; `overall`, when
    given, is how far the whole job is (0..1), and `message` says it in words."""

    stage: str
    step: int
    total: int
    metrics: dict = field(default_factory=dict)
    message: str = ""
    overall: float | None = None

    @property
    def fraction(self) -> float:
        if self.overall is not None:
            return self.overall
        return self.step / self.total if self.total else 1.0


ProgressCallback = Callable[[ProgressEvent], None]
