"""Evaluation metrics as functions over models and dataset views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from backend.data.dataset import ClarcDataset
from backend.data.views import SplitView
from backend.models.checkpoint import LoadedModel

__all__ = ["predict_logits", "accuracy", "per_class_accuracy", "clean_and_attacked_accuracy"]


@torch.no_grad()
def predict_logits(
    module: nn.Module,
    view: SplitView,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> torch.Tensor:
    """Logits (N, C) of every sample of `view`, in order, on the CPU; the module's train/eval mode is restored."""
    was_training = module.training
    module.eval()
    try:
        loader = DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        out = [module(x.to(device, non_blocking=True)).float().cpu() for x, _ in loader]
    finally:
        module.train(was_training)
    return torch.cat(out) if out else torch.empty(0, len(view.classes))


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
