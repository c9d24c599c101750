"""LRP heatmaps with zennit: class heatmaps and concept-conditional heatmaps ("where in this image is the artifact").

Rules: class heatmaps use the EpsilonPlusFlat composite (flat rule on the first layer, z+ on convolutions, epsilon on
dense layers); concept heatmaps default to EpsilonAlpha2Beta1 (alpha-beta on convolutions), whose signed relevance
marks counter-evidence negative and so localises an artifact more tightly. Both run on the model canonized for its
architecture (batch norm merged, residual sums explicit). Architectures registered without canonizers fall back to
gradient x input, a documented, weaker attribution. Composites and canonizers live only inside
`lrp_context`: every hook is removed afterwards, also on error, and the model computes the same outputs as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from scipy.ndimage import binary_dilation, binary_fill_holes
from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat

from backend.attribution.fast_rules import relayed
from backend.attribution.masks import heatmap_masks, strongest_region
from backend.data import view_batch
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel, capture_layer, eval_mode, get_architecture

__all__ = [
    "AttributionMethod",
    "CompositeName",
    "Heatmaps",
    "lrp_context",
    "attribution_method",
    "check_images",
    "class_heatmaps",
    "concept_heatmaps",
    "concept_masks",
    "lrp_batch_size",
]

AttributionMethod = Literal["lrp", "gradient_x_input"]
CompositeName = Literal["epsilon_plus_flat", "epsilon_alpha2_beta1"]
_COMPOSITES = {"epsilon_plus_flat": EpsilonPlusFlat, "epsilon_alpha2_beta1": EpsilonAlpha2Beta1}
_EPSILON = 1e-6  # the composites' epsilon and stabilizer (zennit's defaults)
# Pixels per LRP batch: the rules keep several copies of every activation for the backward pass (measured: a batch
# of 64 at 224 px took ~3.8 GB with a ResNet-18, and larger batches are no faster on a CPU).
_LRP_BATCH_PIXELS = 8 * 224 * 224
Target = Literal["predicted", "true"] | int | Sequence[int] | torch.Tensor


@dataclass(frozen=True)
class Heatmaps:
    """Input relevance (N, 3, H, W) of each sample for its target class, with the logits (N, C) and targets (N,)."""

    relevance: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    method: str

    @property
    def maps(self) -> np.ndarray:
        """Per-pixel relevance (N, H, W): the sum over colour channels."""
        return self.relevance.sum(dim=1).numpy()


def attribution_method(model: LoadedModel) -> AttributionMethod:
    """LRP where the architecture has canonizers, gradient x input otherwise."""
    return "lrp" if get_architecture(model.meta.arch).canonizers is not None else "gradient_x_input"


@contextmanager
def lrp_context(model: LoadedModel, composite: str = "epsilon_plus_flat") -> Iterator[nn.Module]:
    """The model with LRP rules and canonizers applied, in eval mode; all of it is undone on exit."""
    if composite not in _COMPOSITES:
        raise ConfigError(f"unknown composite {composite!r}; choose one of {', '.join(_COMPOSITES)}")
    make_canonizers = get_architecture(model.meta.arch).canonizers
    with eval_mode(model.module) as module:
        if make_canonizers is None:
            yield module
        else:
            made = _COMPOSITES[composite](epsilon=_EPSILON, stabilizer=_EPSILON, canonizers=make_canonizers())
            rules = relayed(made, _EPSILON)
            with rules.context(module) as modified:
                yield modified


def lrp_batch_size(model: LoadedModel) -> int:
    """Images per LRP batch at the model's input size: 8 at 224 px, 64 at 64 px (bounded memory)."""
    return int(np.clip(_LRP_BATCH_PIXELS // model.meta.input_size**2, 1, 64))


def check_images(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Refuse a batch the model cannot take: it must be (N, 3, S, S) with S the model's input size."""
    size = model.meta.input_size
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ConfigError(f"heatmaps need a batch of images (N, 3, {size}, {size}); got {shape}")
    if images.shape[1] != 3:
        raise ConfigError(f"images must have 3 colour channels, got {images.shape[1]}")
    if tuple(images.shape[2:]) != (size, size):
        raise ConfigError(f"the model takes {size}x{size} images, got {images.shape[2]}x{images.shape[3]}")
    if not torch.isfinite(images).all():
        raise ConfigError("images contain NaN or infinite values")
    return images


def _targets(target: Target, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    n, classes = logits.shape
    if isinstance(target, str):
        if target == "predicted":
            return logits.argmax(dim=1)
        if target == "true":
            if labels is None:
                raise ConfigError("target 'true' needs the samples' labels")
            chosen = torch.as_tensor(labels, dtype=torch.long)
        else:
            raise ConfigError(f"unknown target {target!r}; use 'predicted', 'true' or class indices")
    elif isinstance(target, int):
        chosen = torch.full((n,), target, dtype=torch.long)
    else:
        chosen = torch.as_tensor(target, dtype=torch.long).flatten()
    if chosen.shape != (n,):
        raise ConfigError(f"need one target per image: {n} images, {chosen.numel()} targets")
    if (chosen < 0).any() or (chosen >= classes).any():
        raise ConfigError(f"target class out of range: the model has classes 0..{classes - 1}, got {chosen.tolist()}")
    return chosen.to(logits.device)


def class_heatmaps(
    model: LoadedModel,
    images: torch.Tensor,
    target: Target = "predicted",
    labels: torch.Tensor | None = None,
    method: AttributionMethod | None = None,
) -> Heatmaps:
    """Input relevance for each image's target class (the predicted one, the true one, or given indices).
    Relevance starts as the target logit, so an LRP heatmap sums to about that logit. `method` defaults to LRP
    where the architecture supports it; `gradient_x_input` can also be asked for."""
    images = check_images(model, images)
    method = method or attribution_method(model)
    if method not in ("lrp", "gradient_x_input"):
        raise ConfigError(f"unknown attribution method {method!r}; use 'lrp' or 'gradient_x_input'")
    if method == "lrp" and attribution_method(model) != "lrp":
        raise ConfigError(f"{model.meta.arch} has no LRP canonizers; use method 'gradient_x_input'")
    if isinstance(target, torch.Tensor | np.ndarray | list | tuple):
        target = torch.as_tensor(target, dtype=torch.long).flatten()
        if target.numel() != len(images):
            raise ConfigError(f"need one target per image: {len(images)} images, {target.numel()} targets")
    step = lrp_batch_size(model)
    parts = [
        _class_heatmaps(
            model,
            images[i : i + step],
            target[i : i + step] if isinstance(target, torch.Tensor) else target,
            None if labels is None else torch.as_tensor(labels)[i : i + step],
            method,
        )
        for i in range(0, max(len(images), 1), step)  # in chunks: bounded memory whatever the caller's batch
    ]
    if len(parts) == 1:
        return parts[0]
    return Heatmaps(
        relevance=torch.cat([p.relevance for p in parts]),
        logits=torch.cat([p.logits for p in parts]),
        targets=torch.cat([p.targets for p in parts]),
        method=method,
    )


def _class_heatmaps(model, images: torch.Tensor, target, labels, method: AttributionMethod) -> Heatmaps:
    device = next(model.module.parameters()).device
    x = images.to(device).detach().requires_grad_(True)
    with lrp_context(model) if method == "lrp" else eval_mode(model.module) as module:
        logits = module(x)
        targets = _targets(target, logits.detach(), labels)
        start = torch.zeros_like(logits)
        start[torch.arange(len(x)), targets] = 1.0
        if method == "lrp":
            start = start * logits.detach()
        (grad,) = torch.autograd.grad(logits, x, grad_outputs=start)
    relevance = grad if method == "lrp" else grad * x.detach()
    return Heatmaps(
        relevance=relevance.detach().cpu(), logits=logits.detach().cpu(), targets=targets.cpu(), method=method
    )


def concept_heatmaps(
    model: LoadedModel,
    images: torch.Tensor,
    cav: np.ndarray,
    layer: str,
    composite: CompositeName = "epsilon_alpha2_beta1",
) -> np.ndarray:
    """Where in each image the concept is, (N, H, W): relevance starts at `layer` as the positive activations
    weighted by the CAV, a⁺ · h per channel and position, and is propagated to the input."""
    images = check_images(model, images)
    step = lrp_batch_size(model)  # in chunks: bounded memory whatever the caller's batch
    starts = range(0, max(len(images), 1), step)
    return np.concatenate([_concept_heatmaps(model, images[i : i + step], cav, layer, composite) for i in starts])


def _concept_heatmaps(model, images: torch.Tensor, cav: np.ndarray, layer: str, composite: str) -> np.ndarray:
    device = next(model.module.parameters()).device
    h = torch.as_tensor(np.asarray(cav), dtype=torch.float32, device=device)
    x = images.to(device).detach().requires_grad_(True)
    method = attribution_method(model)
    with lrp_context(model, composite) as module, capture_layer(module, layer) as captured:
        module(x)
        acts = captured[0]
        if acts.ndim < 2 or acts.shape[1] != h.shape[0]:
            raise ConfigError(
                f"a CAV of {h.shape[0]} channels does not fit layer {layer} of shape {tuple(acts.shape[1:])}"
            )
        weights = h.view(1, -1, *([1] * (acts.ndim - 2)))
        start = acts.detach().clamp(min=0) * weights
        (grad,) = torch.autograd.grad(acts, x, grad_outputs=start)
    relevance = grad if method == "lrp" else grad * x.detach()
    return relevance.detach().sum(dim=1).cpu().numpy()


def concept_masks(
    model: LoadedModel, view: SplitView, indices: Sequence[int], cav: np.ndarray, layer: str
) -> np.ndarray:
    """Where the concept is in samples `indices` of `view`, as bool masks (N, S, S): concept heatmaps turned into
    masks (`masks.heatmap_masks`), each reduced to its region of most relevance (`masks.strongest_region`), grown by
    a pixel and with its holes filled (thresholded relevance misses an artifact's rim and plain inner parts), in
    batches of 128."""
    indices = np.asarray(indices, dtype=np.int64)
    size = model.meta.input_size
    masks = np.zeros((len(indices), size, size), dtype=bool)
    for start in range(0, len(indices), 128):
        part = indices[start : start + 128]
        x, _ = view_batch(view, part, model.meta.normalization)
        maps = concept_heatmaps(model, x, cav, layer)
        for k, region in enumerate(strongest_region(heatmap_masks(maps), maps)):
            masks[start + k] = binary_fill_holes(binary_dilation(region, iterations=1)) if region.any() else region
    return masks
