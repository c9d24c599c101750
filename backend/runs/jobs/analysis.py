"""Analysis jobs: the long work a page needs over a whole split (predictions, a layer's activations, every LRP
heatmap and their outlier scores, 2-D embeddings), run in the background through the same run store and executors as
corrections.

One forward pass collects the logits with the layers' max- and mean-pooled activations (and full maps when asked);
heatmaps follow, then the outlier scores, then the embeddings asked for. Everything lands in the workspace caches the
pages read, so a page shows the job's progress and works with what is ready instead of blocking. At its next layer a
job pauses while a page computes what its user waits for (`backend.runs.execution.foreground`).
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
from backend.discovery import EMBEDDINGS, split_embedding
from backend.errors import Cancelled, ConfigError
from backend.models import load_checkpoint
from backend.progress import ProgressCallback, ProgressEvent
from backend.runs.execution.foreground import pause_points, wait_for_foreground

__all__ = [
    "ANALYSIS_KIND",
    "AnalysisCancelled",
    "AnalysisJob",
    "analysis_wanted",
    "run_analysis_job",
]

ANALYSIS_KIND = "analysis"  # the run store's `kind` of these jobs
_HEATMAP_CHUNK = 64  # samples per heatmap step: bounds memory and paces progress and cancellation


class AnalysisCancelled(Cancelled):
    """An analysis job stopped at its cancellation flag; what it finished stays in the caches."""


@dataclass(frozen=True)
class AnalysisJob:
    """What to analyse: a split of `dataset` under the model at `checkpoint`. `layers` get max- and mean-pooled
    activations (and full maps with `full_maps`); `heatmaps` adds every sample's LRP heatmap and the outlier scores;
    `embeddings` (entries of EMBEDDINGS) are 2-D maps of the first layer's activations or of the heatmaps."""

    checkpoint: str
    dataset: str
    split: str = "train"
    layers: tuple[str, ...] = ()
    full_maps: bool = False
    heatmaps: bool = True
    embeddings: tuple[str, ...] = ()
    device: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of {SPLITS}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        unknown = [e for e in self.embeddings if e not in EMBEDDINGS]
        if unknown:
            raise ConfigError(f"unknown embedding {unknown[0]!r}; choose from {', '.join(EMBEDDINGS)}")

    def to_dict(self) -> dict:
        """The job as it reads back from the run store (JSON: lists, not tuples), so configs compare equal."""
        return asdict(self) | {"layers": list(self.layers), "embeddings": list(self.embeddings)}

    @classmethod
    def from_dict(cls, data: dict) -> AnalysisJob:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown analysis job fields: {', '.join(unknown)}")
        tuples = {"layers": tuple(data.get("layers", ())), "embeddings": tuple(data.get("embeddings", ()))}
        return cls(**(dict(data) | tuples))


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
    Progress: the pass is the first 30% when heatmaps follow (half when only embeddings do, all of it alone), the
    heatmaps most of the rest, the outlier scores and the embeddings the end."""
    seconds: dict[str, float] = {}
    model = load_checkpoint(job.checkpoint)
    dataset = open_dataset(job.dataset, workspace)
    view = dataset.split(job.split)
    model.module.to(resolve_device(job.device))
    layers = job.layers or (model.default_layer,)
    bounds = _stage_bounds(job)

    def report(stage: str, message: str):
        low, high = bounds[stage]

        def on_event(event: ProgressEvent) -> None:
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled(f"cancelled during {stage}")
            if on_progress:
                done = event.metrics.get("samples", event.step)
                overall = low + (high - low) * event.fraction
                words = event.message or f"{message}: {done:,} of {len(view):,} images"
                on_progress(ProgressEvent(stage, event.step, event.total, {"samples": done}, words, overall))

        return on_event

    with pause_points(model.module, lambda: wait_for_foreground(workspace, cancel)):  # pages first, see there
        start = time.perf_counter()
        found = collect_in_one_pass(
            model,
            view,
            dataset.dataset_id,
            analysis_wanted(model, layers, job.full_maps),
            workspace=workspace,
            batch_size=job.batch_size,
            on_progress=report("predictions", f"predictions and activations of {', '.join(layers)}"),
            cancel=cancel,
        )
        seconds["single_pass"] = time.perf_counter() - start
        result = {"images": len(view), "split": job.split, "layers": list(layers), "seconds": seconds}
        if job.heatmaps:
            logits = np.asarray(found[(model.output_layer(), "none")].values)
            start = time.perf_counter()
            on_heatmaps = report("heatmaps", "LRP heatmaps of every image")
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
                logits.argmax(axis=1),
                workspace=workspace,
                on_progress=report("outlier scores", "heatmap outlier scores"),
            )
            seconds["outlier_scores"] = time.perf_counter() - start
        if job.embeddings:
            start = time.perf_counter()
            on_embedding = report("embeddings", "2-D maps")
            for step, entry in enumerate(job.embeddings):
                source, method = entry.split("/")
                what = f"{_METHOD_NAMES[method]} of the {_source_name(source, layers[0])}"
                on_embedding(
                    ProgressEvent(
                        "embeddings", step, len(job.embeddings), {}, f"{what} (map {step + 1} of {len(job.embeddings)})"
                    )
                )
                split_embedding(model, view, dataset.dataset_id, layers[0], source, method, workspace=workspace)
            seconds["embeddings"] = time.perf_counter() - start
        return result


_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}


def _source_name(source: str, layer: str) -> str:
    return f"activations of {layer}" if source == "activations" else "heatmaps"


def _stage_bounds(job: AnalysisJob) -> dict[str, tuple[float, float]]:
    """The share of the job's progress bar each stage fills."""
    if job.heatmaps:
        marks = (0.3, 0.85, 0.9) if job.embeddings else (0.3, 0.95, 1.0)
    else:
        marks = (0.5, 0.5, 0.5) if job.embeddings else (1.0, 1.0, 1.0)
    return {
        "predictions": (0.0, marks[0]),
        "heatmaps": (marks[0], marks[1]),
        "outlier scores": (marks[1], marks[2]),
        "embeddings": (marks[2], 1.0),
    }
