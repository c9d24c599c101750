"""The model's outputs on a whole view: logits of a forward pass, and softmax predictions disk-cached like any other
activations (the logits are the output layer's activations)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from backend.concepts.activations import cached_activations
from backend.data.views import SplitView
from backend.models import LoadedModel, eval_mode
from backend.progress import ProgressCallback

__all__ = ["Predictions", "cached_predictions", "predict_logits"]


@torch.no_grad()
def predict_logits(
    module: nn.Module,
    data: SplitView | Subset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> torch.Tensor:
    """Logits (N, C) of every sample of a view (or a Subset of one), in order, on the CPU; the module's train/eval
    mode is restored."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    with eval_mode(module):
        out = [module(x.to(device, non_blocking=True)).float().cpu() for x, _ in loader]
    if out:
        return torch.cat(out)
    view = data.dataset if isinstance(data, Subset) else data
    return torch.empty(0, len(view.classes))


@dataclass(frozen=True)
class Predictions:
    """The model's softmax output (N, K) on every sample of a view, with the true labels (N,)."""

    sample_ids: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def cached_predictions(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> Predictions:
    """Softmax predictions of every sample, from logits disk-cached like any other activations."""
    logits = cached_activations(
        model, view, dataset_id, model.output_layer(), "none", workspace=workspace, on_progress=on_progress
    )
    z = np.asarray(logits.values, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return Predictions(sample_ids=logits.sample_ids, labels=np.asarray(logits.labels, dtype=np.int64), probs=probs)
