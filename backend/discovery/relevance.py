"""Latent relevances: how much each channel of a layer contributes to a class's logit in each image (LRP relevance at
the layer, summed over positions, as CRP defines a concept's relevance), with the channels' max-pooled activations.
Both are cached per (model, dataset, split, layer, class), so a second look at a class costs nothing."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from backend.attribution import attribution_method, lrp_context
from backend.data import view_batch
from backend.data.views import SplitView
from backend.errors import Cancelled, ConfigError
from backend.models import LoadedModel, capture_layer, eval_mode, model_fingerprint
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import CacheKey, cached_array, digest_lines

__all__ = ["DiscoveryCancelled", "LatentRelevances", "latent_relevances"]


class DiscoveryCancelled(Cancelled):
    """The analysis was cancelled through its cancellation flag."""


@dataclass(frozen=True)
class LatentRelevances:
    """Per sample (the view's `indices`, N) and channel (C): the LRP relevance for class `class_index` (N, C; sums
    to about the class logit where the rules conserve) and the max-pooled activation (N, C)."""

    indices: np.ndarray
    relevance: np.ndarray
    activation: np.ndarray
    layer: str
    class_index: int


def latent_relevances(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    indices: Sequence[int],
    layer: str,
    class_index: int,
    *,
    workspace: str | os.PathLike | None = None,
    batch_size: int = 64,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> LatentRelevances:
    """The latent relevances of samples `indices` of `view` at `layer` for class `class_index`, from the cache or
    computed in batches (progress per batch; `cancel` set stops before the next batch with DiscoveryCancelled)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not len(indices):
        raise ConfigError("no samples to explain")
    if not 0 <= class_index < len(view.classes):
        raise ConfigError(f"class index {class_index} out of range 0..{len(view.classes) - 1}")
    samples = digest_lines(view.sample_ids[i] for i in indices)
    fields = {"method": attribution_method(model), "layer": layer, "target": int(class_index)}
    key = CacheKey.of_view("relevances", model_fingerprint(model), dataset_id, view, samples=samples, **fields)
    compute = partial(_relevances, model, view, indices, layer, class_index, batch_size, on_progress, cancel)
    relevance, activation = cached_array(key.path(workspace), compute)
    return LatentRelevances(indices, relevance, activation, layer, class_index)


def _relevances(model, view, indices, layer, class_index, batch_size, on_progress, cancel) -> np.ndarray:
    """Relevances and activations (2, N, C) of the samples, computed batch by batch."""
    relevance, activation = [], []
    starts = range(0, len(indices), batch_size)
    for step, start in enumerate(starts, start=1):
        if cancel is not None and cancel.is_set():
            raise DiscoveryCancelled("discovery cancelled")
        x, _ = view_batch(view, indices[start : start + batch_size].tolist(), model.meta.normalization)
        r, a = _batch_relevance(model, x, layer, class_index)
        relevance.append(r)
        activation.append(a)
        if on_progress:
            on_progress(
                ProgressEvent("relevances", step, len(starts), {"samples": min(start + batch_size, len(indices))})
            )
    return np.stack([np.concatenate(relevance), np.concatenate(activation)])


def _batch_relevance(model: LoadedModel, x: torch.Tensor, layer: str, class_index: int) -> tuple[np.ndarray, ...]:
    """Relevance (N, C) at `layer` for the class logit and the layer's max-pooled activation (N, C) of one batch.
    Under the LRP rules the gradient at a layer's output is its relevance; without canonizers (gradient x input
    attribution) it is gradient times activation."""
    device = next(model.module.parameters()).device
    lrp = attribution_method(model) == "lrp"
    with lrp_context(model) if lrp else eval_mode(model.module) as module, capture_layer(module, layer) as captured:
        logits = module(x.to(device))
        acts = captured[0]
        if acts.ndim < 2:
            raise ConfigError(f"layer {layer} has no channels to explain (output shape {tuple(acts.shape)})")
        start = torch.zeros_like(logits)
        start[:, class_index] = logits.detach()[:, class_index] if lrp else 1.0
        (grad,) = torch.autograd.grad(logits, acts, grad_outputs=start)
    relevance = grad if lrp else grad * acts.detach()
    dims = tuple(range(2, acts.ndim))
    summed = relevance.sum(dim=dims) if dims else relevance
    pooled = acts.detach().amax(dim=dims) if dims else acts.detach()
    return summed.float().cpu().numpy(), pooled.float().cpu().numpy()
