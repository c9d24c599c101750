"""Analysis jobs: the long work a page needs over a whole split (predictions, a layer's activations, every LRP
heatmap and their outlier scores), run in the background through the same run store and executors as corrections.

One forward pass collects the logits with the layers' max- and mean-pooled activations (and full maps when asked);
heatmaps follow, then the outlier scores. Everything lands in the workspace caches the pages read, so a page shows
the job's progress and works with what is ready instead of blocking.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from backend.attribution import cached_heatmaps, cached_outlier_scores
from backend.concepts import collect_in_one_pass
from backend.data import SPLITS, open_dataset
from backend.device import resolve_device
from backend.errors import Cancelled, ConfigError
from backend.models import load_checkpoint
from backend.progress import ProgressCallback, ProgressEvent

__all__ = ["ANALYSIS_KIND", "AnalysisCancelled", "AnalysisJob", "analysis_wanted", "run_analysis_job"]

ANALYSIS_KIND = "analysis"  # the run store's `kind` of these jobs
_HEATMAP_CHUNK = 64  # samples per heatmap step: bounds memory and paces progress and cancellation


class AnalysisCancelled(Cancelled):
    """An analysis job stopped at its cancellation flag; what it finished stays in the caches."""


@dataclass(frozen=True)
class AnalysisJob:
    """What to analyse: a split of `dataset` under the model at `checkpoint`. `layers` get max- and mean-pooled
    activations (and full maps with `full_maps`); `heatmaps` adds every sample's LRP heatmap and the outlier scores."""

    checkpoint: str
    dataset: str
    split: str = "train"
    layers: tuple[str, ...] = ()
    full_maps: bool = False
    heatmaps: bool = True
    device: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of {SPLITS}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")

    def to_dict(self) -> dict:
        """The job as it reads back from the run store (JSON: lists, not tuples), so configs compare equal."""
        return asdict(self) | {"layers": list(self.layers)}

    @classmethod
    def from_dict(cls, data: dict) -> AnalysisJob:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown analysis job fields: {', '.join(unknown)}")
        return cls(**(dict(data) | {"layers": tuple(data.get("layers", ()))}))


def analysis_wanted(model, layers: tuple[str, ...], full_maps: bool) -> list[tuple[str, str]]:
    """The (layer, pooling) entries one pass collects: the logits, and each layer max- and mean-pooled (and full)."""
    poolings = ("max", "mean", "none") if full_maps else ("max", "mean")
    return [(model.output_layer(), "none")] + [(layer, pooling) for layer in layers for pooling in poolings]


def run_analysis_job(
    job: AnalysisJob,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run every stage of `job`, skipping what the caches already hold; returns seconds per stage and the counts.
    Progress: the pass is the first 30% (all of it without heatmaps), heatmaps the rest."""
    seconds: dict[str, float] = {}
    model = load_checkpoint(job.checkpoint)
    dataset = open_dataset(job.dataset, workspace)
    view = dataset.split(job.split)
    model.module.to(resolve_device(job.device))
    layers = job.layers or (model.default_layer,)
    share = 0.3 if job.heatmaps else 1.0

    def report(stage: str, low: float, high: float, message: str):
        def on_event(event: ProgressEvent) -> None:
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled(f"cancelled during {stage}")
            if on_progress:
                done = event.metrics.get("samples", event.step)
                overall = low + (high - low) * event.fraction
                words = f"{message}: {done:,} of {len(view):,} images"
                on_progress(ProgressEvent(stage, event.step, event.total, {"samples": done}, words, overall))

        return on_event

    start = time.perf_counter()
    found = collect_in_one_pass(
        model,
        view,
        dataset.dataset_id,
        analysis_wanted(model, layers, job.full_maps),
        workspace=workspace,
        batch_size=job.batch_size,
        on_progress=report("predictions", 0.0, share, f"predictions and activations of {', '.join(layers)}"),
        cancel=cancel,
    )
    seconds["single_pass"] = time.perf_counter() - start
    result = {"images": len(view), "split": job.split, "layers": list(layers), "seconds": seconds}
    if not job.heatmaps:
        return result
    logits = np.asarray(found[(model.output_layer(), "none")].values)
    predicted = logits.argmax(axis=1)
    start = time.perf_counter()
    on_heatmaps = report("heatmaps", share, 0.95, "LRP heatmaps of every image")
    chunks = [np.arange(i, min(i + _HEATMAP_CHUNK, len(view))) for i in range(0, len(view), _HEATMAP_CHUNK)]
    for step, chunk in enumerate(chunks, start=1):
        cached_heatmaps(model, view, dataset.dataset_id, chunk, workspace=workspace, batch_size=job.batch_size)
        on_heatmaps(ProgressEvent("heatmaps", step, len(chunks), {"samples": int(chunk[-1]) + 1}))
    seconds["heatmaps"] = time.perf_counter() - start
    start = time.perf_counter()
    cached_outlier_scores(
        model,
        view,
        dataset.dataset_id,
        predicted,
        workspace=workspace,
        on_progress=report("outlier scores", 0.95, 1.0, "heatmap outlier scores"),
    )
    seconds["outlier_scores"] = time.perf_counter() - start
    return result
