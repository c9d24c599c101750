"""Evaluation metrics as functions over models and dataset views, and `evaluate`, the before/after report.

Accuracy on the clean and the attacked images of a split (the same images without / with the artifact; see
`attacks` for where attacked images come from), per class and as confusion matrices, and on annotated subsets; TCAV
(share of positive directional derivatives of the attacked class's logit along the CAV, and their mean magnitude)
and R_bias (the share of relevance inside the artifact's mask) on the attacked images and on annotated artifacts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Subset

from backend.attribution import class_heatmaps, r_bias
from backend.concepts import Cav
from backend.data import ClarcDataset, SplitView, view_batch
from backend.errors import ConfigError
from backend.evaluation.attacks import AttackConfig, AttackedSet, attacked_set
from backend.evaluation.fidelity import with_sham
from backend.evaluation.figures import figure_field, figures_of
from backend.evaluation.intervals import SampleHits, accuracy_interval
from backend.evaluation.predictions import Predictions, predict_logits
from backend.models import LoadedModel, capture_layer, eval_mode

__all__ = [
    "FIGURES",
    "EvaluationResult",
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "clean_accuracy",
    "clean_and_attacked_accuracy",
    "directional_derivatives",
    "evaluate",
]


def accuracy(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Share of samples whose arg-max logit is the label."""
    labels = torch.as_tensor(labels)
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(1) == labels).float().mean())


def per_class_accuracy(logits: torch.Tensor, labels: np.ndarray | torch.Tensor, classes: tuple[str, ...]) -> dict:
    labels = torch.as_tensor(labels)
    hits = logits.argmax(1) == labels
    return {
        name: float(hits[labels == c].float().mean()) if (labels == c).any() else float("nan")
        for c, name in enumerate(classes)
    }


def confusion_matrix(logits: torch.Tensor, labels: np.ndarray | torch.Tensor, n_classes: int) -> list[list[int]]:
    """Counts (K, K): row = true class, column = predicted class."""
    labels = torch.as_tensor(labels).long()
    counts = torch.bincount(labels * n_classes + logits.argmax(1), minlength=n_classes * n_classes)
    return counts.view(n_classes, n_classes).tolist()


def clean_accuracy(predictions: Predictions, classes: tuple[str, ...]) -> dict:
    """`clean_and_attacked_accuracy`'s clean figures from predictions already made (an analysis job's)."""
    probs = torch.from_numpy(np.asarray(predictions.probs))
    return {
        "clean_acc": accuracy(probs, predictions.labels),
        "clean_acc_per_class": per_class_accuracy(probs, predictions.labels, classes),
        "n": len(predictions.labels),
    }


def clean_and_attacked_accuracy(
    model: LoadedModel,
    dataset: ClarcDataset,
    *,
    split: str = "test",
    artifact: str | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict:
    """Accuracy on the clean and the attacked view of a split (the same images without / with the artifact, the
    latter with its 95% interval), and the clean accuracy per class. Without a planted or named artifact only the
    clean figures are returned."""
    module = model.module.to(device)
    batch_size = model.batch_size(batch_size)
    norm = model.meta.normalization
    clean = dataset.split(split, "clean", norm)
    clean_logits = predict_logits(module, clean, batch_size=batch_size, device=device)
    result = {
        "clean_acc": accuracy(clean_logits, clean.labels),
        "clean_acc_per_class": per_class_accuracy(clean_logits, clean.labels, dataset.classes),
        "n": len(clean),
    }
    if artifact or dataset.planting:
        attacked = dataset.split(split, "attacked", norm, artifact=artifact)
        attacked_logits = predict_logits(module, attacked, batch_size=batch_size, device=device)
        result["attacked_acc"] = accuracy(attacked_logits, attacked.labels)
        hits = (attacked_logits.argmax(1).numpy() == attacked.labels)[:, None]
        result["attacked_acc_interval"] = accuracy_interval(SampleHits(hits[:, 0], hits, np.arange(len(hits))))
        result["attacked_acc_per_class"] = per_class_accuracy(attacked_logits, attacked.labels, dataset.classes)
        result["artifact"] = attacked.artifact
    return result


def directional_derivatives(
    model: LoadedModel, images: torch.Tensor, cav: np.ndarray, layer: str, class_index: int
) -> np.ndarray:
    """Per image (N,): the derivative of logit `class_index` along the CAV at `layer`, summed over positions,
    sum_{c,p} d f / d a_{c,p} * h_c. Its sign gives the TCAV score, its magnitude the TCAV sensitivity."""
    module = model.module
    device = next(module.parameters()).device
    h = torch.as_tensor(np.asarray(cav), dtype=torch.float32, device=device)
    with eval_mode(module), capture_layer(module, layer) as captured:
        logits = module(images.to(device))
        acts = captured[0]
        (grad,) = torch.autograd.grad(logits[:, class_index].sum(), acts)
    if grad.shape[1] != h.shape[0]:
        raise ConfigError(f"a CAV of {h.shape[0]} channels does not fit layer {layer} ({grad.shape[1]} channels)")
    dd = (grad * h.view(1, -1, *([1] * (grad.ndim - 2)))).flatten(1).sum(1)
    return dd.detach().cpu().numpy()


@dataclass(frozen=True)
class EvaluationResult:
    """Before/after figures of a model; JSON-ready with `to_dict`. Fields are None where they do not apply (no
    attacked images, no CAV, no annotated subset). `attack_source` says where the attacked figures come from
    (planted, supplied, transplanted), `attack` describes it; `annotated_*` are measured on the samples of the split
    annotated as showing the artifact. The figures (label, unit, direction) are declared on their fields."""

    clean_acc: float = figure_field("clean accuracy", "share", higher_is_better=True, default=dataclasses.MISSING)
    attacked_acc: float | None = figure_field("attacked accuracy", "share", higher_is_better=True)
    with_artifact_acc: float | None = figure_field(
        "accuracy, test images annotated with the artifact", "share", higher_is_better=True
    )
    without_artifact_acc: float | None = figure_field("accuracy, the other test images", "share", higher_is_better=True)
    tcav_sensitivity: float | None = figure_field("TCAV sensitivity", "value", higher_is_better=False)
    tcav_score: float | None = figure_field("TCAV score", "value", higher_is_better=False)
    annotated_tcav_sensitivity: float | None = figure_field(
        "TCAV sensitivity, annotated test images", "value", higher_is_better=False
    )
    annotated_tcav_score: float | None = figure_field(
        "TCAV score, annotated test images", "value", higher_is_better=False
    )
    r_bias: float | None = figure_field("R_bias (relevance on the artifact)", "value", higher_is_better=False)
    clean_acc_per_class: dict = field(default_factory=dict)
    n: int = 0
    attacked_acc_per_class: dict | None = None
    artifact: str | None = None
    split: str = "test"
    classes: list = field(default_factory=list)
    confusion: list | None = None
    attacked_confusion: list | None = None
    attack_source: str | None = None
    attack: dict | None = None
    n_attacked: int | None = None
    attacked_class: str | None = None
    n_annotated: int | None = None
    attacked_acc_interval: list[float] | None = None
    estimate_check: dict | None = None
    hits: SampleHits | None = field(default=None, repr=False, compare=False)  # per sample, in memory only

    def to_dict(self) -> dict:
        data = asdict(replace(self, hits=None))
        del data["hits"]
        return data

    @property
    def estimated(self) -> bool:
        """Whether the attacked figures estimate the natural artifact (transplanted) rather than measure it."""
        return self.attack_source == "transplanted"

    @property
    def reliable(self) -> bool | None:
        """Whether the attacked figures can be trusted: True where measured (planted, supplied) or where the
        transplant passed its check; False where it failed; None where unchecked or there are no attacked figures."""
        if self.attacked_acc is None:
            return None
        if not self.estimated:
            return True
        return (self.estimate_check or {}).get("reliable")

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationResult:
        """The result as `to_dict` (or an older record, with fewer fields) wrote it; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)} - {"hits"}
        return cls(**{k: v for k, v in data.items() if k in known})


FIGURES = figures_of(EvaluationResult)  # every figure of an evaluation, by field name


def _tcav(model: LoadedModel, view: SplitView, indices: Sequence[int], cav: Cav, k: int, batch_size: int):
    """(TCAV score, TCAV sensitivity) of class `k` along `cav` on samples `indices` of `view`."""
    dds = []
    for s in range(0, len(indices), batch_size):
        x, _ = view_batch(view, indices[s : s + batch_size], model.meta.normalization)
        dds.append(directional_derivatives(model, x, cav.vector, cav.layer, k))
    dd = np.concatenate(dds)
    return float((dd > 0).mean()), float(np.abs(dd).mean())


def _explained(model: LoadedModel, view: SplitView, indices: np.ndarray, cav: Cav | None, k: int | None, batch_size):
    """R_bias against the masks of what the attack drew and, with a CAV, TCAV score and sensitivity, on samples
    `indices` of an attacked view (each batch decoded once for both)."""
    dds, biases = [], []
    for s in range(0, len(indices), batch_size):
        part = indices[s : s + batch_size].tolist()
        x, _ = view_batch(view, part, model.meta.normalization)
        if cav is not None and k is not None:
            dds.append(directional_derivatives(model, x, cav.vector, cav.layer, k))
        masks = np.stack([view.mask(i) for i in part])
        biases.append(r_bias(class_heatmaps(model, x).maps, masks))
    figures = {"r_bias": float(np.concatenate(biases).mean())}
    if dds:
        dd = np.concatenate(dds)
        figures |= {"tcav_score": float((dd > 0).mean()), "tcav_sensitivity": float(np.abs(dd).mean())}
    return figures


def _attacked_figures(
    model: LoadedModel, attacked: AttackedSet, cav: Cav | None, k: int | None, batch_size: int, clean_hits: np.ndarray
):
    """Accuracy over every round with its interval (and the hits per sample, clean and attacked, to resample later);
    for a transplant, its check with its sham for this model; TCAV and R_bias on the first round."""
    device = next(model.module.parameters()).device
    logits, labels = [], []
    for view in attacked.views:
        logits.append(predict_logits(model.module, Subset(view, attacked.indices.tolist()), device=device))
        labels.append(view.labels[attacked.indices])
    rounds = np.stack([(z.argmax(1).numpy() == y) for z, y in zip(logits, labels)], axis=1)  # (M, R)
    hits = SampleHits(clean_hits, rounds, attacked.indices, attacked.donors)
    check = attacked.check_for(model)
    if check is not None and attacked.sham is not None:
        check = with_sham(check, _sham_change(model, attacked, clean_hits))
    logits, labels = torch.cat(logits), np.concatenate(labels)
    classes = attacked.views[0].classes
    return {
        "hits": hits,
        "attacked_acc_interval": accuracy_interval(hits),
        "estimate_check": check.to_dict() if check is not None else None,
        "attacked_acc": accuracy(logits, labels),
        "attacked_acc_per_class": per_class_accuracy(logits, labels, classes),
        "attacked_confusion": confusion_matrix(logits, labels, len(classes)),
        "attack_source": attacked.source,
        "attack": attacked.detail,
        "artifact": attacked.views[0].artifact,
        "n_attacked": len(labels),
    } | _explained(model, attacked.views[0], attacked.indices, cav, k, batch_size)


def _sham_change(model: LoadedModel, attacked: AttackedSet, clean_hits: np.ndarray) -> float:
    """Accuracy on the sham-pasted test images minus on the same clean ones (see `fidelity.with_sham`)."""
    device = next(model.module.parameters()).device
    logits = predict_logits(model.module, Subset(attacked.sham, attacked.indices.tolist()), device=device)
    sham_acc = float((logits.argmax(1).numpy() == attacked.sham.labels[attacked.indices]).mean())
    return sham_acc - float(clean_hits[attacked.indices].mean())


def _attacked_index(dataset: ClarcDataset, cav: Cav | None, attacked_class: str | None) -> int | None:
    """The class whose logit TCAV follows: given, else the CAV's attacked class, else the first planted class."""
    name = attacked_class or (cav.attacked_class if cav is not None else None)
    name = name or (dataset.planting.classes[0] if dataset.planting else None)
    if name is None:
        return None
    if name not in dataset.classes:
        raise ConfigError(f"unknown attacked class {name!r}; classes are {list(dataset.classes)}")
    return dataset.classes.index(name)


def evaluate(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav: Cav | None = None,
    *,
    split: str = "test",
    artifact: str | None = None,
    attacked_class: str | None = None,
    artifact_ids: Collection[str] | None = None,
    attack: AttackConfig | AttackedSet | None = None,
    donor_ids: Collection[str] = (),
    batch_size: int = 128,
) -> EvaluationResult:
    """Everything a before/after comparison needs: clean figures; attacked figures (accuracy, TCAV, R_bias) on the
    attacked images `attack` asks for (`donor_ids`: training samples annotated as showing the artifact, for the
    transplant attack); with `artifact_ids` (samples of the split annotated as showing it) accuracy with/without
    them and TCAV on them. Comparing two models, build the attacked set once (`attacked_set`) and pass it to both:
    the transplant attack's masks come from a model."""
    device = next(model.module.parameters()).device
    batch_size = model.batch_size(batch_size)
    clean = dataset.split(split, "clean", model.meta.normalization)
    clean_logits = predict_logits(model.module, clean, batch_size=batch_size, device=device)
    k = _attacked_index(dataset, cav, attacked_class)
    figures: dict = {
        "clean_acc": accuracy(clean_logits, clean.labels),
        "clean_acc_per_class": per_class_accuracy(clean_logits, clean.labels, dataset.classes),
        "n": len(clean),
        "confusion": confusion_matrix(clean_logits, clean.labels, len(dataset.classes)),
        "classes": list(dataset.classes),
        "attacked_class": None if k is None else dataset.classes[k],
    }
    attacked = attack
    if not isinstance(attack, AttackedSet):
        attacked = attacked_set(model, dataset, cav, attack, split=split, artifact=artifact, donor_ids=donor_ids)
    clean_hits = clean_logits.argmax(1).numpy() == clean.labels
    figures["hits"] = SampleHits(clean_hits)
    if attacked is not None:
        figures |= _attacked_figures(model, attacked, cav, k, batch_size, clean_hits)
    if artifact_ids is not None:
        figures |= _annotated_figures(model, dataset, split, set(artifact_ids), cav, k, batch_size)
    return EvaluationResult(split=split, **figures)


def _annotated_figures(model, dataset, split: str, wanted: set[str], cav: Cav | None, k: int | None, batch_size: int):
    """Accuracy on the split's samples annotated as showing the artifact and on the others; TCAV on the former."""
    view = dataset.split(split, "as_planted", model.meta.normalization)
    logits = predict_logits(model.module, view, device=next(model.module.parameters()).device)
    flags = np.array([sid in wanted for sid in view.sample_ids])
    hits = logits.argmax(1).numpy() == view.labels
    figures = {
        "with_artifact_acc": float(hits[flags].mean()) if flags.any() else None,
        "without_artifact_acc": float(hits[~flags].mean()) if (~flags).any() else None,
        "n_annotated": int(flags.sum()),
    }
    if flags.any() and cav is not None and k is not None:
        figures["annotated_tcav_score"], figures["annotated_tcav_sensitivity"] = _tcav(
            model, view, np.flatnonzero(flags), cav, k, batch_size
        )
    return figures
