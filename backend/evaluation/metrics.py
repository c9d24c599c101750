"""Evaluation metrics as functions over models and dataset views, and `evaluate`, the before/after report.

Accuracy on the clean and the attacked view of a split (the same images without / with the artifact), per class and
on annotated subsets; TCAV (share of positive directional derivatives of the attacked class's logit along the CAV,
and their mean magnitude) and R_bias on artifact samples.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

import numpy as np
import torch

from backend.attribution import class_heatmaps, r_bias, view_batch
from backend.data.dataset import ClarcDataset
from backend.errors import ConfigError
from backend.evaluation.predictions import predict_logits
from backend.models import LoadedModel, capture_layer, eval_mode

__all__ = [
    "EvaluationResult",
    "accuracy",
    "per_class_accuracy",
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


def clean_and_attacked_accuracy(
    model: LoadedModel,
    dataset: ClarcDataset,
    *,
    split: str = "test",
    artifact: str | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict:
    """Accuracy on the clean and the attacked view of a split (the same images without / with the artifact), and
    the clean accuracy per class. Without a planted or named artifact only the clean figures are returned."""
    module = model.module.to(device)
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
    artifact to attack with, no CAV, no annotated subset)."""

    clean_acc: float
    clean_acc_per_class: dict
    n: int
    attacked_acc: float | None = None
    attacked_acc_per_class: dict | None = None
    artifact: str | None = None
    tcav_score: float | None = None
    tcav_sensitivity: float | None = None
    r_bias: float | None = None
    with_artifact_acc: float | None = None
    without_artifact_acc: float | None = None
    split: str = "test"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    model: LoadedModel,
    dataset: ClarcDataset,
    cav=None,
    *,
    split: str = "test",
    artifact: str | None = None,
    attacked_class: str | None = None,
    artifact_ids: Collection[str] | None = None,
    batch_size: int = 128,
) -> EvaluationResult:
    """Everything a before/after comparison needs. TCAV and R_bias are measured on the attacked view (every sample
    carries the artifact); `artifact_ids` (annotated real artifacts) adds accuracy with/without them."""
    figures = clean_and_attacked_accuracy(
        model, dataset, split=split, artifact=artifact, device=next(model.module.parameters()).device
    )
    extra: dict = {}
    if artifact_ids is not None:
        view = dataset.split(split, "as_planted", model.meta.normalization)
        logits = predict_logits(model.module, view, device=next(model.module.parameters()).device)
        wanted = set(artifact_ids)
        flags = np.array([sid in wanted for sid in view.sample_ids])
        hits = logits.argmax(1).numpy() == view.labels
        extra["with_artifact_acc"] = float(hits[flags].mean()) if flags.any() else None
        extra["without_artifact_acc"] = float(hits[~flags].mean()) if (~flags).any() else None
    if "attacked_acc" in figures:
        attacked_view = dataset.split(split, "attacked", artifact=artifact)
        name = attacked_class or (dataset.planting.classes[0] if dataset.planting else dataset.classes[0])
        k = dataset.classes.index(name)
        dds, biases = [], []
        for start in range(0, len(attacked_view), batch_size):
            indices = range(start, min(start + batch_size, len(attacked_view)))
            x, _ = view_batch(attacked_view, indices, model)
            if cav is not None:
                dds.append(directional_derivatives(model, x, cav.vector, cav.layer, k))
            masks = np.stack([attacked_view.mask(i) for i in indices])
            biases.append(r_bias(class_heatmaps(model, x).maps, masks))
        extra["r_bias"] = float(np.concatenate(biases).mean())
        if dds:
            dd = np.concatenate(dds)
            extra["tcav_score"] = float((dd > 0).mean())
            extra["tcav_sensitivity"] = float(np.abs(dd).mean())
    return EvaluationResult(
        clean_acc=figures["clean_acc"],
        clean_acc_per_class=figures["clean_acc_per_class"],
        n=figures["n"],
        attacked_acc=figures.get("attacked_acc"),
        attacked_acc_per_class=figures.get("attacked_acc_per_class"),
        artifact=figures.get("artifact"),
        split=split,
        **extra,
    )
