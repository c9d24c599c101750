"""Correction methods, one registry: each is a config class plus what it adds to the shared loop (an activation
transform, a loss penalty) or, for P-ClArC, a training-free edit of the model. The math is pure tensor functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from backend.activations import get_layer
from backend.correction.configs import (
    AClarcConfig,
    FinetuneConfig,
    PClarcConfig,
    RRClarcConfig,
    RRRConfig,
)
from backend.errors import ConfigError

__all__ = [
    "Batch",
    "CorrectionMethod",
    "MethodInfo",
    "register_method",
    "method_names",
    "get_method",
    "gradient_target",
    "directional_penalty",
    "ConceptProjection",
    "attach_projection",
]


@dataclass
class Batch:
    """One training batch: inputs (None when training from cached activations), labels, which samples carry the
    artifact, their artifact masks (N, H, W; only for RRR) and the step's random generator."""

    inputs: torch.Tensor | None
    labels: torch.Tensor
    has_artifact: torch.Tensor
    masks: torch.Tensor | None
    generator: torch.Generator


class CorrectionMethod:
    """What a method adds to the loop. `h` (C,) is the unit CAV; `attacked_class` the class the artifact was
    planted into (or annotated for); `clean_mean`/`artifact_mean` (H, W) the mean CAV projection per position."""

    needs_layer_grad = False
    needs_input_grad = False
    needs_masks = False
    trains = True

    def __init__(self, config) -> None:
        self.config = config
        self.h: torch.Tensor | None = None
        self.attacked_class = 0
        self.clean_mean: torch.Tensor | None = None
        self.artifact_mean: torch.Tensor | None = None

    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return acts

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return None


@dataclass(frozen=True)
class MethodInfo:
    name: str
    config: type
    factory: Callable[[object], CorrectionMethod]
    description: str


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, *, config: type, description: str):
    def decorate(cls):
        if name in _METHODS:
            raise ValueError(f"correction method {name!r} is registered twice")
        _METHODS[name] = MethodInfo(name, config, cls, description)
        return cls

    return decorate


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


def get_method(name: str) -> MethodInfo:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown correction method {name!r}; choose one of {', '.join(_METHODS)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Pure math.


def gradient_target(
    logits: torch.Tensor,
    target: str,
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    class_index: int | None = None,
) -> torch.Tensor:
    """The scalar whose gradient RR-ClArC makes orthogonal to the CAV (summed over the batch)."""
    if class_index is not None:
        return logits[:, class_index].sum()
    if target == "max_logit":
        return logits.max(dim=1).values.sum()
    if target == "target_logit":
        return logits.gather(1, labels.view(-1, 1)).sum()
    if target == "all_logits":
        return logits.sum()
    if target == "all_logits_random":  # one random class per sample: an unbiased estimate of penalising every logit
        picks = torch.randint(logits.shape[1], (len(logits), 1), generator=generator).to(logits.device)
        return logits.gather(1, picks).sum()
    if target == "logprobs":
        return torch.log_softmax(logits, dim=1).sum()
    raise ConfigError(f"unknown gradient target {target!r}")


def directional_penalty(grad: torch.Tensor, h: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Aggregate the directional derivative g(p)·h of a layer gradient (N, C, ...) along a CAV (C,) at every spatial
    position: `l1` mean |g·h|, `l2` mean (g·h)², `cosine` mean |cos(g(p), h)| (scale-free)."""
    shape = (1, -1) + (1,) * (grad.ndim - 2)
    dd = (grad * h.view(shape)).sum(dim=1)
    if aggregation == "l1":
        return dd.abs().mean()
    if aggregation == "l2":
        return dd.pow(2).mean()
    if aggregation == "cosine":
        norms = grad.norm(dim=1) * h.norm()
        return (dd.abs() / norms.clamp_min(1e-12)).mean()
    raise ConfigError(f"unknown aggregation {aggregation!r}")


def _project_along(acts: torch.Tensor, h: torch.Tensor, target: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Move each position's projection h·a(p) to `target` (broadcast over the batch): a + s (target - h·a) h."""
    shape = (1, -1) + (1,) * (acts.ndim - 2)
    proj = (acts * h.view(shape)).sum(dim=1, keepdim=True)
    return acts + strength * (target.unsqueeze(0).unsqueeze(0) - proj) * h.view(shape)


# ---------------------------------------------------------------------------------------------------------------
# Methods.


@register_method("finetune", config=FinetuneConfig, description="fine-tuning without a penalty (the control)")
class Finetune(CorrectionMethod):
    pass


@register_method("rrclarc", config=RRClarcConfig, description="RR-ClArC: penalise the gradient along the CAV")
class RRClarc(CorrectionMethod):
    needs_layer_grad = True

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        cfg: RRClarcConfig = self.config
        target = gradient_target(
            logits,
            cfg.gradient_target,
            batch.labels,
            batch.generator,
            self.attacked_class if cfg.class_specific else None,
        )
        (grad,) = torch.autograd.grad(target, acts, create_graph=True)
        return cfg.lam * directional_penalty(grad.float(), self.h, cfg.aggregation)


@register_method("aclarc", config=AClarcConfig, description="A-ClArC: add the artifact to clean samples' activations")
class AClarc(CorrectionMethod):
    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        clean = ~batch.has_artifact.to(acts.device)
        if not clean.any():
            return acts
        shifted = _project_along(acts, self.h.to(acts.dtype), self.artifact_mean.to(acts.dtype), self.config.strength)
        return torch.where(clean.view(-1, *([1] * (acts.ndim - 1))), shifted, acts)


@register_method("pclarc", config=PClarcConfig, description="P-ClArC: project the artifact out (training-free)")
class PClarc(CorrectionMethod):
    trains = False


@register_method("rrr", config=RRRConfig, description="RRR: penalise input gradients inside artifact masks")
class RRR(CorrectionMethod):
    needs_input_grad = True
    needs_masks = True

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = torch.log_softmax(logits, dim=1).sum()
        (grad,) = torch.autograd.grad(target, batch.inputs, create_graph=True)
        inside = grad.float() * batch.masks.unsqueeze(1)
        return self.config.lam * inside.pow(2).sum(dim=(1, 2, 3)).mean()


# ---------------------------------------------------------------------------------------------------------------
# P-ClArC's projection as part of the model.


class ConceptProjection(nn.Module):
    """a -> a - (h·a(p) - offset(p)) h: the CAV component of every position set to its clean-sample mean. Its buffers
    are not persistent, so the model's state dict keeps the plain architecture's keys."""

    def __init__(self, h: torch.Tensor, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("h", torch.as_tensor(h, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32), persistent=False)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        return _project_along(acts, self.h.to(acts.dtype), self.offset.to(acts.dtype))


def attach_projection(module: nn.Module, layer: str, h: torch.Tensor, offset: torch.Tensor) -> nn.Module:
    """Make `layer` of `module` output its projected activations (P-ClArC); returns the module, edited in place."""
    target = get_layer(module, layer)
    if hasattr(target, "clarc_projection"):
        raise ConfigError(f"layer {layer} already carries a P-ClArC projection")
    original = target.forward
    target.clarc_projection = ConceptProjection(h, offset).to(next(module.parameters()).device)
    target.forward = lambda *args, **kwargs: target.clarc_projection(original(*args, **kwargs))
    return module
