"""Correction methods, one registry: each is a config class plus what it adds to the shared loop (an activation
transform, a loss penalty) or, for P-ClArC, a training-free edit of the model. A method declares what it needs
(concept statistics, gradients at the layer or the input, artifact masks) and receives it in `prepare`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from backend.correction.configs import (
    AClarcConfig,
    FinetuneConfig,
    PClarcConfig,
    RRClarcConfig,
    RRRConfig,
)
from backend.correction.penalties import directional_penalty, gradient_target
from backend.errors import ConfigError
from backend.models import attach_projection, project_along

__all__ = [
    "Batch",
    "ConceptInputs",
    "CorrectionMethod",
    "MethodInfo",
    "register_method",
    "method_names",
    "get_method",
]


@dataclass
class Batch:
    """One training batch, on the training device: the images (full-forward path) or the CAV layer's cached output
    (cached path), the labels, which samples carry the artifact, their artifact masks (N, H, W; only for methods
    that need them) and the run's random generator."""

    labels: torch.Tensor
    has_artifact: torch.Tensor
    generator: torch.Generator
    images: torch.Tensor | None = None
    layer_out: torch.Tensor | None = None
    masks: torch.Tensor | None = None


@dataclass(frozen=True)
class ConceptInputs:
    """What a method may use about the concept, prepared once per run: the unit CAV `h` (C,) on the training device,
    the index of the class the artifact is tied to, and, for methods that declare `needs_concept_stats`, the mean CAV
    projection per spatial position (H, W) over the clean and over the artifact training samples."""

    h: torch.Tensor
    attacked_class: int
    clean_mean: torch.Tensor | None = None
    artifact_mean: torch.Tensor | None = None


class CorrectionMethod:
    """What a method adds to the loop. Subclasses declare their needs as class attributes and override `transform`
    (of the CAV layer's output), `penalty` (added to the cross-entropy) or, when they do not train, `edit`."""

    needs_concept_stats = False
    needs_layer_grad = False
    needs_input_grad = False
    needs_masks = False
    trains = True

    def __init__(self, config) -> None:
        self.config = config
        self.concept: ConceptInputs | None = None

    def prepare(self, concept: ConceptInputs) -> None:
        if self.needs_concept_stats and concept.clean_mean is None:
            raise ConfigError(f"{type(self).__name__} needs the concept's clean and artifact statistics")
        self.concept = concept

    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return acts

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return None

    def edit(self, module: nn.Module, layer: str) -> None:
        """The training-free change of `module` (methods with `trains = False`)."""
        raise NotImplementedError(f"{type(self).__name__} trains; it does not edit the model")


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
            self.concept.attacked_class if cfg.class_specific else None,
        )
        (grad,) = torch.autograd.grad(target, acts, create_graph=True)
        return cfg.lam * directional_penalty(grad.float(), self.concept.h, cfg.aggregation)


@register_method("aclarc", config=AClarcConfig, description="A-ClArC: add the artifact to clean samples' activations")
class AClarc(CorrectionMethod):
    needs_concept_stats = True

    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        clean = ~batch.has_artifact.to(acts.device)
        if not clean.any():
            return acts
        h, target = self.concept.h.to(acts.dtype), self.concept.artifact_mean.to(acts.dtype)
        shifted = project_along(acts, h, target, self.config.strength)
        return torch.where(clean.view(-1, *([1] * (acts.ndim - 1))), shifted, acts)


@register_method("pclarc", config=PClarcConfig, description="P-ClArC: project the artifact out (training-free)")
class PClarc(CorrectionMethod):
    needs_concept_stats = True
    trains = False

    def edit(self, module: nn.Module, layer: str) -> None:
        attach_projection(module, layer, self.concept.h, self.concept.clean_mean)


@register_method("rrr", config=RRRConfig, description="RRR: penalise input gradients inside artifact masks")
class RRR(CorrectionMethod):
    needs_input_grad = True
    needs_masks = True

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = torch.log_softmax(logits, dim=1).sum()
        (grad,) = torch.autograd.grad(target, batch.images, create_graph=True)
        inside = grad.float() * batch.masks.unsqueeze(1)
        return self.config.lam * inside.pow(2).sum(dim=(1, 2, 3)).mean()
