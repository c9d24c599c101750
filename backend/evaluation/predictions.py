"""The model's outputs on a whole view: logits of a forward pass, and softmax predictions disk-cached like any other
activations (the logits are the output layer's activations)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from backend.concepts.activation_cache import activation_entry, cached_activations, read_partial
from backend.data.views import SplitView
from backend.models import LoadedModel, eval_mode
from backend.progress import ProgressCallback

__all__ = ["Predictions", "cached_predictions", "predict_logits", "predictions_so_far"]


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
    return _softmax(logits.sample_ids, logits.labels, logits.values)


def predictions_so_far(
    model: LoadedModel, view: SplitView, dataset_id: str, *, workspace: str | os.PathLike | None = None
) -> Predictions | None:
    """The predictions of the first k samples of a view whose logits are in the cache (all of them once complete,
    the rows written so far while a pass collects them); None if there are none. Never computes anything."""
    entry = activation_entry(model, view, dataset_id, model.output_layer(), "none", view.sample_ids, workspace)
    rows = read_partial(entry)
    if rows is None:
        return None
    k = len(rows)
    return _softmax(view.sample_ids[:k], view.labels[:k], rows)


def _softmax(sample_ids, labels, logits) -> Predictions:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True)) if len(z) else z
    probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32) if len(z) else z.astype(np.float32)
    return Predictions(sample_ids=tuple(sample_ids), labels=np.asarray(labels, dtype=np.int64), probs=probs)
