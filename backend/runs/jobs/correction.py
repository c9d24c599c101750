"""A whole correction as one job: load, fit or read the concepts' CAVs, measure before, correct, measure after,
export. The CLI runs it; run executors can run the same job description in another process."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from backend.concepts import DEFAULT_POOLING, DEFAULT_SCOPE, CavConfig, CavKind, CavPooling, CavScope
from backend.correction import CorrectionCancelled, LoopConfig, correct, get_method, method_names, same_layer
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.evaluation import AttackConfig, attacked_set
from backend.models import load_checkpoint
from backend.options import check_choices, option
from backend.progress import ProgressCallback, ProgressEvent
from backend.runs.jobs.concepts import CavFitOptions, ConceptSpec, further_attack, resolve_concept, run_examples
from backend.runs.jobs.export import cav_file, export_corrected, save_examples
from backend.runs.jobs.result import RunOutputs, RunResult

__all__ = ["ConceptSpec", "CorrectionJob", "method_config_from", "run_correction_job", "stated_penalty_weight"]


def method_config_from(method: str, options: dict):
    """The method's config from a flat dict of options; an option the method does not take is an error."""
    info = get_method(method)
    names = {f.name for f in fields(info.config)}
    unknown = sorted(set(options) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "no options"
        raise ConfigError(f"{method} does not take {', '.join(unknown)} (it takes {takes})")
    return info.config(**options)


def stated_penalty_weight(config: dict) -> float | None:
    """The penalty weight a stored job's method options state (None: the method's default, or it has none)."""
    knob = get_method(config["method"]).penalty_weight
    return (config.get("method_options") or {}).get(knob) if knob else None


_OLD_CONCEPT_FIELDS = ("cav", "labels", "concept", "attacked_class")  # a job's first concept, before `concepts`


@dataclass(frozen=True)
class CorrectionJob:
    """Everything a correction run needs, JSON-serialisable. `concepts` are the concepts it corrects (default: the
    planted artifact), each with its own CAV, annotations, λ and attacked images; the first one's figures are the
    run's headline, and `attack` says how its attacked test images are made (the others bring their attacked copy or
    are transplanted). A concept without a saved CAV gets one fitted with `layer`, `cav_kind`, `pooling` and
    `cav_scope`, the same defaults as everywhere else."""

    out: str
    checkpoint: str = option(str(DEFAULT_CHECKPOINT), help="model checkpoint (default: the shipped default model)")
    dataset: str | None = option(None, help="dataset spec (default: the one the model was trained on)")
    method: str = option("rrclarc", help="correction method", choices=method_names)
    method_options: dict = field(default_factory=dict)
    loop: LoopConfig = field(default_factory=LoopConfig)
    concepts: tuple[ConceptSpec, ...] = (ConceptSpec(),)
    layer: str | None = option(None, help="CAV layer when fitting one (default: the architecture's default)")
    cav_kind: CavKind = option("pattern", help="kind of CAV when fitting one")
    pooling: CavPooling = option(DEFAULT_POOLING, help="how the layer's maps are pooled when fitting a CAV")
    cav_scope: CavScope = option(
        DEFAULT_SCOPE,
        help="samples a fitted CAV contrasts: those of the attacked class (the seed's default) or all",
    )
    attack: AttackConfig = field(default_factory=AttackConfig)

    def __post_init__(self) -> None:
        if not self.concepts or not all(isinstance(c, ConceptSpec) for c in self.concepts):
            raise ConfigError("a correction job takes one or more ConceptSpec entries (use from_dict for plain data)")
        method_config_from(self.method, self.method_options)
        CavConfig(kind=self.cav_kind)
        check_choices(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CorrectionJob:
        """The job as `to_dict` wrote it; a job stored before `concepts` (its first concept in `cav`, `labels`,
        `concept` and `attacked_class`, the others in `more_concepts`) reads as the same job."""
        data = dict(data)
        if "concepts" not in data:
            first = {k: data.pop(k) for k in _OLD_CONCEPT_FIELDS if k in data}
            data["concepts"] = [first, *data.pop("more_concepts", ())]
        data["loop"] = LoopConfig(**data.get("loop", {}))
        data["attack"] = AttackConfig(**data.get("attack", {}))
        data["concepts"] = tuple(c if isinstance(c, ConceptSpec) else ConceptSpec(**c) for c in data["concepts"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown correction job fields: {', '.join(unknown)}")
        return cls(**data)


class _Progress:
    """What a job is doing, in words and as a share of the whole (the epochs span 20% to 90%), with an estimate of
    the time left while it trains (the epochs' mean time, plus one more evaluation)."""

    _TRAINING = (0.2, 0.9)

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.evaluation_seconds = 0.0
        self.epoch_seconds: list[float] = []

    def phase(self, message: str, overall: float) -> None:
        if self.on_progress:
            self.on_progress(ProgressEvent("phase", 0, 1, message=message, overall=overall))

    def epoch(self, event: ProgressEvent) -> None:
        self.epoch_seconds.append(float(event.metrics.get("seconds", 0.0)))
        left = (event.total - event.step) * float(np.mean(self.epoch_seconds)) + self.evaluation_seconds
        low, high = self._TRAINING
        message = f"epoch {event.step}/{event.total} · about {_duration(left)} left"
        if self.on_progress:
            self.on_progress(replace(event, message=message, overall=low + (high - low) * event.fraction))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_correction_job(
    job: CorrectionJob,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run the job: the CAVs, the attacked test images (built once, with the model before correction), the figures
    before, the correction, the figures after, the export. Returns the run's result, a row per concept in the
    job's order."""

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise CorrectionCancelled(f"{job.method} run cancelled")

    progress = _Progress(on_progress)
    progress.phase("loading the model and the data", 0.0)
    model = load_checkpoint(job.checkpoint, device=resolve_device(job.loop.device))
    dataset = open_dataset(job.dataset or model.meta.dataset, workspace)
    fitting = any(spec.cav is None for spec in job.concepts)
    progress.phase("fitting the CAV" if fitting else "reading the CAV", 0.05)
    fit = CavFitOptions(job.layer, job.cav_kind, job.pooling, job.cav_scope)
    attacks = [job.attack] + [further_attack(job.attack)] * (len(job.concepts) - 1)
    concepts = [
        resolve_concept(spec, attack, fit, model, dataset, workspace) for spec, attack in zip(job.concepts, attacks)
    ]
    same_layer([c.target() for c in concepts])  # before the costly steps, not at the correction
    progress.phase("making the attacked test images", 0.1)
    for concept in concepts:
        concept.attacked = attacked_set(model, dataset, concept.cav, concept.attack, donor_ids=concept.artifact_ids)
    check_cancel()
    progress.phase("evaluating the model before the correction", 0.12)
    started = time.perf_counter()
    for concept in concepts:
        concept.before = concept.evaluate(model, dataset)
    progress.evaluation_seconds = time.perf_counter() - started
    check_cancel()
    result = correct(
        model,
        dataset,
        [c.target() for c in concepts],
        job.method,
        method_config_from(job.method, job.method_options),
        job.loop,
        workspace=workspace,
        on_progress=progress.epoch,
        cancel=cancel,
    )
    check_cancel()
    progress.phase("evaluating the corrected model", 0.9)
    outcomes = tuple(c.outcome(c.evaluate(result.model, dataset)) for c in concepts)
    progress.phase("exporting the corrected model", 0.98)
    first = concepts[0]
    checkpoint, card = export_corrected(
        result,
        Path(job.out),
        cavs=[c.cav for c in concepts],
        outcomes=outcomes,
        dataset=dataset,
        artifact_ids=first.artifact_ids,
    )
    examples = save_examples(checkpoint, run_examples(dataset, first))
    outputs = RunOutputs(str(checkpoint), str(card), str(cav_file(checkpoint)), str(examples))
    return RunResult(job.method, outcomes, tuple(result.history), result.seconds, result.cached_path, outputs)
