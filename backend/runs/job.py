"""A whole correction as one job: load, fit the CAV, measure before, correct, measure after, export. The CLI runs it;
run executors can run the same job description in another process."""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from backend.concepts import CavConfig, CavKind, CavPooling, fit_concept, planted_labels, read_concept_labels
from backend.correction import CorrectionCancelled, LoopConfig, correct, get_method, method_names
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.evaluation import evaluate
from backend.models import load_checkpoint
from backend.options import check_choices, option
from backend.progress import ProgressCallback
from backend.runs.export import export_corrected

__all__ = ["CorrectionJob", "method_config_from", "run_correction_job"]


def method_config_from(method: str, options: dict):
    """The method's config from a flat dict of options; an option the method does not take is an error."""
    info = get_method(method)
    names = {f.name for f in fields(info.config)}
    unknown = sorted(set(options) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "no options"
        raise ConfigError(f"{method} does not take {', '.join(unknown)} (it takes {takes})")
    return info.config(**options)


@dataclass(frozen=True)
class CorrectionJob:
    """Everything a correction run needs, JSON-serialisable. `labels`: a CSV sample_id,label of the training split
    (default: the planted artifact)."""

    out: str
    checkpoint: str = option(str(DEFAULT_CHECKPOINT), help="model checkpoint (default: the shipped default model)")
    dataset: str | None = option(None, help="dataset spec (default: the one the model was trained on)")
    method: str = option("rrclarc", help="correction method", choices=method_names)
    method_options: dict = field(default_factory=dict)
    loop: LoopConfig = field(default_factory=LoopConfig)
    layer: str | None = option(None, help="CAV layer (default: the architecture's default)")
    cav_kind: CavKind = option("pattern", help="kind of CAV the correction follows")
    pooling: CavPooling = option("mean", help="how the CAV layer's maps are pooled to fit the CAV")
    labels: str | None = option(
        None, help="concept labels, a CSV sample_id,label of the training split (default: the planted artifact)"
    )

    def __post_init__(self) -> None:
        method_config_from(self.method, self.method_options)
        CavConfig(kind=self.cav_kind)
        check_choices(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CorrectionJob:
        data = dict(data)
        data["loop"] = LoopConfig(**data.get("loop", {}))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown correction job fields: {', '.join(unknown)}")
        return cls(**data)


def run_correction_job(
    job: CorrectionJob,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run the job; returns paths of the export and the before/after figures."""

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise CorrectionCancelled(f"{job.method} run cancelled")

    model = load_checkpoint(job.checkpoint, device=resolve_device(job.loop.device))
    dataset = open_dataset(job.dataset or model.meta.dataset, workspace)
    labels = read_concept_labels(job.labels) if job.labels else planted_labels(dataset, "train")
    concept = fit_concept(
        model,
        dataset,
        labels,
        layer=job.layer,
        pooling=job.pooling,
        config=CavConfig(kind=job.cav_kind),
        n_random=0,
        workspace=workspace,
    )
    cav = concept.cav
    artifact_ids = {sid for sid, flag in labels.items() if flag}
    check_cancel()
    before = evaluate(model, dataset, cav)
    check_cancel()
    result = correct(
        model,
        dataset,
        cav,
        job.method,
        method_config_from(job.method, job.method_options),
        job.loop,
        artifact_ids=artifact_ids,
        workspace=workspace,
        on_progress=on_progress,
        cancel=cancel,
    )
    check_cancel()
    after = evaluate(result.model, dataset, cav)
    checkpoint, card = export_corrected(
        result, Path(job.out), cav=cav, dataset=dataset, before=before, after=after, artifact_ids=artifact_ids
    )
    return {
        "checkpoint": str(checkpoint),
        "card": str(card),
        "method": job.method,
        "cached_path": result.cached_path,
        "seconds": result.seconds,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "history": result.history,
        "cav": concept.summary(),
    }
