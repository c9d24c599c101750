"""A whole correction as one job: load, fit the CAV, measure before, correct, measure after, export. The CLI runs it;
run executors can run the same job description in another process."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from backend.concepts import (
    DEFAULT_POOLING,
    DEFAULT_SCOPE,
    Cav,
    CavConfig,
    CavKind,
    CavPooling,
    CavScope,
    check_known_ids,
    fit_concept,
    planted_labels,
    read_concept_labels,
    resolve_cav,
)
from backend.correction import ConceptTarget, CorrectionCancelled, LoopConfig, correct, get_method, method_names
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.evaluation import AttackConfig, AttackedSet, EvaluationResult, attacked_set, evaluate
from backend.models import load_checkpoint
from backend.options import check_choices, option
from backend.progress import ProgressCallback, ProgressEvent
from backend.runs.export import N_EXAMPLES, cav_file, export_corrected, save_examples

__all__ = ["CorrectionJob", "ExtraConcept", "method_config_from", "run_correction_job"]


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
class ExtraConcept:
    """A further concept corrected in the same run as the job's own: a saved CAV (name, id or CAV file) in the same
    layer. Its artifact's samples are those `labels` marks (default: those the CAV was fitted on); `lam` is its own
    penalty weight (default: the method's λ); its attacked figures come from `attacked_dataset`, the user's attacked
    copy of the test images for this artifact (default: transplanted from its annotated training images)."""

    cav: str
    labels: str | None = None
    lam: float | None = None
    attacked_class: str | None = None
    attacked_dataset: str | None = None

    def __post_init__(self) -> None:
        if self.lam is not None and self.lam < 0:
            raise ConfigError(f"the λ of {self.cav} must be non-negative, got {self.lam}")


@dataclass(frozen=True)
class CorrectionJob:
    """Everything a correction run needs, JSON-serialisable. The CAV is `cav` (a saved CAV's name or id, or a CAV
    file) or, without one, fitted from `labels` (a CSV sample_id,label; default: the planted artifact) with the same
    defaults as everywhere else. `attack` says how the attacked test figures are measured. `more_concepts` are
    further saved CAVs corrected in the same run, each measured on its own."""

    out: str
    checkpoint: str = option(str(DEFAULT_CHECKPOINT), help="model checkpoint (default: the shipped default model)")
    dataset: str | None = option(None, help="dataset spec (default: the one the model was trained on)")
    method: str = option("rrclarc", help="correction method", choices=method_names)
    method_options: dict = field(default_factory=dict)
    loop: LoopConfig = field(default_factory=LoopConfig)
    cav: str | None = option(
        None,
        help="the CAV to correct along: a saved CAV's name or id, or a CAV file (default: fit one from the labels)",
    )
    labels: str | None = option(
        None,
        help="concept labels, a CSV sample_id,label (1: shows the artifact); training samples mark the artifact, "
        "test samples give accuracy with and without it (default: the planted artifact)",
    )
    concept: str | None = option(
        None, help="the concept's name, for the run's name and record (default: the saved CAV's, else 'artifact')"
    )
    layer: str | None = option(None, help="CAV layer when fitting one (default: the architecture's default)")
    cav_kind: CavKind = option("pattern", help="kind of CAV when fitting one")
    pooling: CavPooling = option(DEFAULT_POOLING, help="how the layer's maps are pooled when fitting a CAV")
    cav_scope: CavScope = option(
        DEFAULT_SCOPE,
        help="samples a fitted CAV contrasts: those of the attacked class (the seed's default) or all",
    )
    attacked_class: str | None = option(
        None, help="the class the artifact is tied to (default: the CAV's, else where most annotated artifacts are)"
    )
    attack: AttackConfig = field(default_factory=AttackConfig)
    more_concepts: tuple[ExtraConcept, ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(c, ExtraConcept) for c in self.more_concepts):
            raise ConfigError("more_concepts takes ExtraConcept entries (use CorrectionJob.from_dict for plain data)")
        method_config_from(self.method, self.method_options)
        CavConfig(kind=self.cav_kind)
        check_choices(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CorrectionJob:
        data = dict(data)
        data["loop"] = LoopConfig(**data.get("loop", {}))
        data["attack"] = AttackConfig(**data.get("attack", {}))
        data["more_concepts"] = tuple(
            c if isinstance(c, ExtraConcept) else ExtraConcept(**c) for c in data.get("more_concepts", ())
        )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown correction job fields: {', '.join(unknown)}")
        return cls(**data)


def _job_cav(job: CorrectionJob, model, dataset, labels: dict[str, int] | None, workspace) -> tuple[Cav, dict]:
    """The CAV the job names, or one fitted from its labels; with its summary for the record."""
    if job.cav:
        cav = resolve_cav(job.cav, model, dataset.dataset_id, workspace)
        return cav, {"name": cav.name or job.cav, "source": job.cav} | _cav_fields(cav)
    if labels is None:
        raise ConfigError("no CAV and no concept labels: give --cav, or --labels of the samples showing the artifact")
    fit = fit_concept(
        model,
        dataset,
        labels,
        layer=job.layer,
        pooling=job.pooling,
        scope=job.cav_scope,
        attacked_class=job.attacked_class,
        config=CavConfig(kind=job.cav_kind),
        concept=job.concept or "artifact",
        n_random=0,
        workspace=workspace,
    )
    return fit.cav, {"name": None, "source": "fitted for this run"} | fit.summary()


def _cav_fields(cav: Cav) -> dict:
    names = ("kind", "layer", "pooling", "concept", "scope", "attacked_class", "n_concept", "n_other")
    return {k: getattr(cav, k) for k in names}


def _examples(dataset, attacked: AttackedSet | None, attacked_class: str | None, annotated: set[str] | None) -> dict:
    """A few test images to look at before and after: attacked images of other classes than the attacked one (as
    the evaluation measured them) and test images annotated as showing the artifact."""
    rows = []  # (image, mask, sample id, label, kind)
    if attacked is not None:
        view = attacked.views[0]
        other = [
            i for i in attacked.indices if attacked_class is None or view.classes[view.labels[i]] != attacked_class
        ]
        for i in other[:N_EXAMPLES]:
            rows.append((*view.image_and_mask(int(i)), view.sample_ids[i], view.labels[i], attacked.source))
    if annotated:
        view = dataset.split("test", "clean")
        for i in [i for i, sid in enumerate(view.sample_ids) if sid in annotated][:N_EXAMPLES]:
            image = view.image(i)
            rows.append((image, np.zeros(image.shape[:2], dtype=bool), view.sample_ids[i], view.labels[i], "annotated"))
    names = ("images", "masks", "sample_ids", "labels", "kinds")
    return {name: [row[k] for row in rows] for k, name in enumerate(names)}


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


@dataclass
class _RunConcept:
    """One concept of a running job: its CAV (and the record's summary of it), the training samples that show its
    artifact, the annotated test samples, the class it is tied to, its λ, and its attacked test images and figures
    (the attacked images are made once, with the model before the correction, and measure both models)."""

    cav: Cav
    summary: dict
    artifact_ids: set[str]
    annotated_test: set[str] | None
    attacked_class: str | None
    lam: float | None
    attack: AttackConfig
    attacked: AttackedSet | None = None
    before: EvaluationResult | None = None
    after: EvaluationResult | None = None

    def evaluate(self, model, dataset) -> EvaluationResult:
        attack = self.attacked or AttackConfig(attack="none")
        return evaluate(
            model,
            dataset,
            self.cav,
            attacked_class=self.attacked_class,
            artifact_ids=self.annotated_test,
            attack=attack,
        )

    def record(self) -> dict:
        """The concept's row of the run's result: its CAV and its figures before and after."""
        return {
            "name": self.summary.get("name"),
            "concept": self.cav.concept,
            "source": self.summary.get("source"),
            "attacked_class": self.attacked_class,
            "lam": self.lam,
            "before": _concept_figures(self.before),
            "after": _concept_figures(self.after),
        }


_CONCEPT_FIGURES = (
    "clean_acc",
    "attacked_acc",
    "attack_source",
    "n_attacked",
    "tcav_score",
    "tcav_sensitivity",
    "r_bias",
    "with_artifact_acc",
    "without_artifact_acc",
    "n_annotated",
)


def _concept_figures(evaluation: EvaluationResult) -> dict:
    return {name: getattr(evaluation, name) for name in _CONCEPT_FIGURES}


def _split_ids(marked: set[str], train_ids: set[str], test_ids: set[str]) -> tuple[set[str], set[str] | None]:
    return marked & train_ids, (marked & test_ids) or None


def _extra_concept(extra: ExtraConcept, job: CorrectionJob, model, dataset, train_ids, test_ids, workspace):
    """A further concept of the job: its saved CAV, the samples of its annotations (or of the CAV's fit) and where
    its attacked figures come from (its own attacked copy, else transplanted; none when the job measures none)."""
    cav = resolve_cav(extra.cav, model, dataset.dataset_id, workspace)
    labels = read_concept_labels(extra.labels) if extra.labels else None
    if labels is not None:
        check_known_ids(dataset, labels)
    marked = {sid for sid, flag in (labels or {}).items() if flag} or set(cav.concept_ids)
    artifact_ids, annotated_test = _split_ids(marked, train_ids, test_ids)
    if not artifact_ids:
        raise ConfigError(f"no training sample is marked as showing the artifact of {extra.cav}")
    if extra.attacked_dataset:
        attack = AttackConfig(attack="supplied", attacked_dataset=extra.attacked_dataset)
    else:
        attack = replace(job.attack, attack="none" if job.attack.attack == "none" else "transplanted")
    summary = {"name": cav.name or extra.cav, "source": extra.cav} | _cav_fields(cav)
    attacked_class = extra.attacked_class or cav.attacked_class
    return _RunConcept(cav, summary, artifact_ids, annotated_test, attacked_class, extra.lam, attack)


def run_correction_job(
    job: CorrectionJob,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run the job: the CAVs, the attacked test images (built once, with the model before correction), the figures
    before, the correction, the figures after, the export. Returns the export's paths and the figures: `before` and
    `after` of the job's own concept, `concepts` a row per concept (its own first, then `more_concepts`)."""

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise CorrectionCancelled(f"{job.method} run cancelled")

    progress = _Progress(on_progress)
    progress.phase("loading the model and the data", 0.0)
    model = load_checkpoint(job.checkpoint, device=resolve_device(job.loop.device))
    dataset = open_dataset(job.dataset or model.meta.dataset, workspace)
    labels = read_concept_labels(job.labels) if job.labels else (planted_labels(dataset) if dataset.planting else None)
    if labels is not None:
        check_known_ids(dataset, labels)
    progress.phase("fitting the CAV" if not job.cav else "reading the CAV", 0.05)
    cav, cav_summary = _job_cav(job, model, dataset, labels, workspace)
    train_ids, test_ids = (set(dataset.split(s).sample_ids) for s in ("train", "test"))
    marked = {sid for sid, flag in (labels or {}).items() if flag} or set(cav.concept_ids)
    artifact_ids, annotated_test = _split_ids(marked, train_ids, test_ids)
    attacked_class = job.attacked_class or cav.attacked_class
    own = _RunConcept(cav, cav_summary, artifact_ids, annotated_test, attacked_class, None, job.attack)
    concepts = [own] + [
        _extra_concept(x, job, model, dataset, train_ids, test_ids, workspace) for x in job.more_concepts
    ]
    layers = {c.cav.layer for c in concepts}
    if len(layers) > 1:
        raise ConfigError(f"the CAVs of one run must be in the same layer; these are in {', '.join(sorted(layers))}")
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
    targets = [ConceptTarget(c.cav, c.artifact_ids, c.attacked_class, c.lam) for c in concepts]
    result = correct(
        model,
        dataset,
        targets,
        job.method,
        method_config_from(job.method, job.method_options),
        job.loop,
        workspace=workspace,
        on_progress=progress.epoch,
        cancel=cancel,
    )
    check_cancel()
    progress.phase("evaluating the corrected model", 0.9)
    for concept in concepts:
        concept.after = concept.evaluate(result.model, dataset)
    progress.phase("exporting the corrected model", 0.98)
    examples = _examples(dataset, own.attacked, attacked_class, annotated_test)
    rows = [c.record() for c in concepts]
    checkpoint, card = export_corrected(
        result,
        Path(job.out),
        cav=cav,
        cav_summary=cav_summary,
        dataset=dataset,
        before=own.before,
        after=own.after,
        artifact_ids=artifact_ids,
        concepts=[row | {"vector": [float(v) for v in c.cav.vector]} for row, c in zip(rows, concepts)],
    )
    return {
        "checkpoint": str(checkpoint),
        "card": str(card),
        "cav_file": str(cav_file(checkpoint)),
        "examples": str(save_examples(checkpoint, examples)),
        "method": job.method,
        "cached_path": result.cached_path,
        "seconds": result.seconds,
        "before": own.before.to_dict(),
        "after": own.after.to_dict(),
        "concepts": rows,
        "history": result.history,
        "cav": cav_summary,
    }
