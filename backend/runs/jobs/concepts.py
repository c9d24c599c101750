"""The concepts of a running correction job: each `ConceptSpec` resolved to its CAV (saved, or fitted for the run),
the samples that show its artifact, the class it is tied to, its λ and its attacked test images; and the example test
images kept with the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from backend.concepts import (
    Cav,
    CavConfig,
    CavSummary,
    check_known_ids,
    fit_concept,
    planted_labels,
    read_concept_labels,
    resolve_cav,
)
from backend.correction import ConceptTarget
from backend.errors import ConfigError
from backend.evaluation import (
    AttackConfig,
    AttackedSet,
    CavCoverage,
    EvaluationResult,
    cav_coverage,
    evaluate,
    subspace_cav,
    training_pairs,
)
from backend.options import option
from backend.runs.jobs.export import N_EXAMPLES
from backend.runs.jobs.result import ConceptOutcome

__all__ = [
    "CavFitOptions",
    "ConceptSpec",
    "RunConcept",
    "further_attack",
    "resolve_concept",
    "run_examples",
    "short_name",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConceptSpec:
    """One concept a run corrects; every concept of a run is one of these, none special. Its CAV is `cav` (a saved
    CAV's name or id, or a CAV file) or, without one, fitted for the run from `labels` (default: the planted
    artifact). `labels` (a CSV sample_id,label; 1: shows the artifact) marks its training samples for the correction
    and the transplant and its test samples for accuracy with and without it (default: those the saved CAV was fitted
    on). `concept` names it (default: the saved CAV's, else "artifact"); `lam` is its own penalty weight (None: the
    method's); `attacked_class` the class its artifact is tied to (default: the CAV's, else where most annotated
    artifacts are); `attacked_dataset` the user's attacked copy of the test images for it; `rank` the number of
    directions the correction penalises (1: the CAV; more: a concept subspace, the CAV and the leading directions of
    the artifact's activation changes on training images paired with and without it)."""

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
    lam: float | None = None
    attacked_class: str | None = option(
        None, help="the class the artifact is tied to (default: the CAV's, else where most annotated artifacts are)"
    )
    attacked_dataset: str | None = None
    rank: int = option(
        1,
        help="directions the correction penalises: 1 (the CAV) or more (a concept subspace: the CAV and the leading "
        "directions of the artifact's activation changes, for a shortcut one direction does not hold)",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ConfigError(f"the rank of {self.cav or self.concept or 'a concept'} must be a whole number >= 1")
        if self.lam is not None and self.lam < 0:
            raise ConfigError(
                f"the λ of {self.cav or self.concept or 'a concept'} must be non-negative, got {self.lam}"
            )


@dataclass(frozen=True)
class CavFitOptions:
    """How the job fits a CAV for a concept that names no saved one."""

    layer: str | None
    kind: str
    pooling: str
    scope: str


def short_name(spec: ConceptSpec) -> str:
    """What a run's name calls the concept: its name, else its CAV's name or file name, else the planted artifact."""
    if spec.concept:
        return spec.concept
    if spec.cav:
        return Path(spec.cav).name.removesuffix(".json").removesuffix(".cav")
    return "planted artifact"


@dataclass
class RunConcept:
    """One concept of a running job, resolved: its CAV and the record's summary of it, the training samples that
    show its artifact, the annotated test samples, the class it is tied to, its λ, how its attacked test images are
    made and, once made (with the model before the correction, measuring both models), those images and the figures
    before."""

    cav: Cav
    summary: CavSummary
    artifact_ids: set[str]
    annotated_test: set[str] | None
    attacked_class: str | None
    lam: float | None
    attack: AttackConfig
    attacked: AttackedSet | None = None
    before: EvaluationResult | None = None

    def target(self) -> ConceptTarget:
        return ConceptTarget(self.cav, self.artifact_ids, self.attacked_class, self.lam)

    def evaluate(self, model, dataset) -> EvaluationResult:
        return evaluate(
            model,
            dataset,
            self.cav,
            attacked_class=self.attacked_class,
            artifact_ids=self.annotated_test,
            attack=self.attacked or AttackConfig(attack="none"),
        )

    def outcome(self, after: EvaluationResult) -> ConceptOutcome:
        """The concept's row of the run's result: its CAV and its figures before and after."""
        return ConceptOutcome(self.summary, self.attacked_class, self.lam, self.before, after)


def resolve_concept(
    spec: ConceptSpec, attack: AttackConfig, fit: CavFitOptions, model, dataset, workspace
) -> RunConcept:
    """The concept `spec` asks for: its CAV (read, or fitted from its labels), the samples of its annotations (or of
    the CAV's fit) and its attacked images: the user's attacked copy where given, else as `attack` says."""
    labels = read_concept_labels(spec.labels) if spec.labels else None
    if labels is None and spec.cav is None and dataset.planting:
        labels = planted_labels(dataset)
    if labels is not None:
        check_known_ids(dataset, labels)
    if spec.cav:
        cav = resolve_cav(spec.cav, model, dataset.dataset_id, workspace)
        summary = CavSummary.of(cav, name=cav.name or spec.cav, source=spec.cav)
    elif labels is None:
        raise ConfigError("no CAV and no concept labels: give --cav, or --labels of the samples showing the artifact")
    else:
        fitted = fit_concept(
            model,
            dataset,
            labels,
            layer=fit.layer,
            pooling=fit.pooling,
            scope=fit.scope,
            attacked_class=spec.attacked_class,
            config=CavConfig(kind=fit.kind),
            concept=spec.concept or "artifact",
            n_random=0,
            workspace=workspace,
        )
        cav, summary = fitted.cav, fitted.summary(source="fitted for this run")
    marked = {sid for sid, flag in (labels or {}).items() if flag}
    train_ids = set(dataset.split("train").sample_ids)
    artifact_ids = (marked & train_ids) or (set(cav.concept_ids) & train_ids)  # else those the CAV was fitted on
    annotated_test = (marked & set(dataset.split("test").sample_ids)) or None
    if not artifact_ids:
        raise ConfigError(f"no training sample is marked as showing the artifact of {short_name(spec)}")
    if spec.attacked_dataset:
        attack = AttackConfig(attack="supplied", attacked_dataset=spec.attacked_dataset)
    cav, measured = _with_subspace(cav, spec.rank, attack, artifact_ids, model, dataset)
    summary = replace(summary, rank=cav.rank, **(measured.summary_fields() if measured else {}))
    attacked_class = spec.attacked_class or cav.attacked_class
    return RunConcept(cav, summary, artifact_ids, annotated_test, attacked_class, spec.lam, attack)


def _with_subspace(
    cav: Cav, rank: int, attack: AttackConfig, artifact_ids: set[str], model, dataset
) -> tuple[Cav, CavCoverage | None]:
    """The CAV with the concept subspace of `rank` (a saved basis of that rank as saved, else built) and its
    coverage, measured on training images paired with and without the artifact from the concept's attack source.
    At rank 1 a coverage that cannot be measured (no attacked images asked for, none to pair) is left out."""
    if rank == 1:
        cav = cav.with_basis(None)
        if attack.attack == "none":
            return cav, None
        try:
            pairs = training_pairs(model, dataset, cav, attack, artifact_ids)
            if pairs is None:
                return cav, None
            return cav, cav_coverage(model, dataset, cav, pairs, artifact_ids=artifact_ids)[0]
        except ConfigError as exc:
            log.warning("the coverage of the CAV of %s is not measured: %s", cav.concept, exc)
            return cav, None
    pairs = training_pairs(model, dataset, cav, attack, artifact_ids)
    if pairs is None:
        raise ConfigError(
            f"a concept subspace of rank {rank} needs training images with and without the artifact of "
            f"{cav.concept}: a planted artifact, an attacked copy, or annotated training images to transplant from"
        )
    if cav.rank == rank:
        return cav, cav_coverage(model, dataset, cav, pairs, artifact_ids=artifact_ids)[0]
    return subspace_cav(model, dataset, cav, pairs, rank, artifact_ids=artifact_ids)


def further_attack(attack: AttackConfig) -> AttackConfig:
    """How a run's further concepts are attacked where they bring no attacked copy: transplanted from their
    annotated training images (the planted artifact, if any, is the first concept's), or not at all."""
    return replace(attack, attack="none" if attack.attack == "none" else "transplanted")


def run_examples(dataset, concept: RunConcept) -> dict:
    """A few test images to look at before and after: attacked images of other classes than the attacked one (as
    the evaluation measured them) and test images annotated as showing the artifact."""
    rows = []  # (image, mask, sample id, label, kind)
    attacked, attacked_class = concept.attacked, concept.attacked_class
    if attacked is not None:
        view = attacked.views[0]
        other = [
            i for i in attacked.indices if attacked_class is None or view.classes[view.labels[i]] != attacked_class
        ]
        for i in other[:N_EXAMPLES]:
            rows.append((*view.image_and_mask(int(i)), view.sample_ids[i], view.labels[i], attacked.source))
    if concept.annotated_test:
        view = dataset.split("test", "clean")
        for i in [i for i, sid in enumerate(view.sample_ids) if sid in concept.annotated_test][:N_EXAMPLES]:
            image = view.image(i)
            rows.append((image, np.zeros(image.shape[:2], dtype=bool), view.sample_ids[i], view.labels[i], "annotated"))
    names = ("images", "masks", "sample_ids", "labels", "kinds")
    return {name: [row[k] for row in rows] for k, name in enumerate(names)}
