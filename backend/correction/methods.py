"""Correction methods, one registry: each is a config class plus what it adds to the shared loop (an activation
transform, a loss penalty) or, for P-ClArC, a training-free edit of the model. A method declares what it needs
(concept statistics, gradients at the layer or the input, artifact masks and where they come from) and receives it in
`prepare`; its registration names the config field that weights its penalty, so no client reads field names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

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
    (cached path), the labels, which samples carry each concept's artifact (N, K), their artifact masks (N, H, W,
    all concepts together; only for methods that need them) and the run's random generator."""

    labels: torch.Tensor
    has_artifact: torch.Tensor
    generator: torch.Generator
    images: torch.Tensor | None = None
    layer_out: torch.Tensor | None = None
    masks: torch.Tensor | None = None


@dataclass(frozen=True)
class ConceptInputs:
    """What a method may use about one concept, prepared once per run: the unit CAV `h` (C,) on the training device,
    the index of the class the artifact is tied to, its own penalty weight (`lam`; None: the method's), for
    methods that declare `needs_concept_stats`, the mean CAV projection per spatial position (H, W) over the
    samples without and over those with this concept's artifact, and, for a concept subspace, its orthonormal
    `basis` (r, C) whose first row is `h`."""

    h: torch.Tensor
    attacked_class: int
    lam: float | None = None
    clean_mean: torch.Tensor | None = None
    artifact_mean: torch.Tensor | None = None
    basis: torch.Tensor | None = None

    @property
    def directions(self) -> torch.Tensor:
        """What a penalty follows: the basis (r, C) of a concept subspace, else the CAV (C,) itself."""
        return self.h if self.basis is None else self.basis


class CorrectionMethod:
    """What a method adds to the loop, for one concept or several at once (`concepts`, in the order of the batch's
    artifact columns). Subclasses declare their needs as class attributes and override `transform` (of the CAV
    layer's output), `penalty` (added to the cross-entropy) or, when they do not train, `edit`."""

    needs_concept_stats = False
    needs_layer_grad = False
    needs_input_grad = False
    needs_masks = False
    trains = True

    def __init__(self, config) -> None:
        self.config = config
        self.concepts: list[ConceptInputs] = []

    @property
    def mask_source(self) -> str | None:
        """Where the artifact masks come from (`auto`, `ground_truth`, `concept`); None for methods without masks."""
        return None

    def prepare(self, concepts: ConceptInputs | Sequence[ConceptInputs]) -> None:
        concepts = [concepts] if isinstance(concepts, ConceptInputs) else list(concepts)
        if not concepts:
            raise ConfigError(f"{type(self).__name__} needs at least one concept")
        if self.needs_concept_stats and any(c.clean_mean is None for c in concepts):
            raise ConfigError(f"{type(self).__name__} needs the concept's clean and artifact statistics")
        self.concepts = concepts

    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return acts

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return None

    def edit(self, module: nn.Module, layer: str) -> None:
        """The training-free change of `module` (methods with `trains = False`)."""
        raise NotImplementedError(f"{type(self).__name__} trains; it does not edit the model")


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its config class, its implementation (`factory(config)`), a one-line description and the
    name of the config field that weights its penalty (`penalty_weight`; None: the method has no penalty weight)."""

    name: str
    config: type
    factory: type[CorrectionMethod]
    description: str
    penalty_weight: str | None = None

    @property
    def trains(self) -> bool:
        """False for a training-free method (it edits the model instead: no epochs, no learning rate)."""
        return self.factory.trains

    @property
    def needs_masks(self) -> bool:
        """Whether the method trains on artifact masks of the training images."""
        return self.factory.needs_masks

    @property
    def default_penalty_weight(self) -> float | None:
        """The default penalty weight of the method's config; None for a method without one."""
        return None if self.penalty_weight is None else getattr(self.config(), self.penalty_weight)

    def penalty_weight_of(self, options: Mapping[str, object] | None = None) -> float | None:
        """The penalty weight a run's method options (field name -> value) give, else the default; None for a
        method without one."""
        if self.penalty_weight is None:
            return None
        value = (options or {}).get(self.penalty_weight)
        return float(value) if value is not None else self.default_penalty_weight


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, *, config: type, description: str, penalty_weight: str | None = None):
    """Register the decorated CorrectionMethod as `name`, with its config class and, where its loss has a penalty
    weight, the name of that config field."""

    def decorate(cls):
        if name in _METHODS:
            raise ValueError(f"correction method {name!r} is registered twice")
        if penalty_weight is not None and penalty_weight not in {f.name for f in fields(config)}:
            raise ValueError(f"{config.__name__} has no field {penalty_weight!r} for the penalty weight of {name!r}")
        _METHODS[name] = MethodInfo(name, config, cls, description, penalty_weight)
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


@register_method(
    "rrclarc",
    config=RRClarcConfig,
    description="RR-ClArC: penalise the gradient along the CAV",
    penalty_weight="lam",
)
class RRClarc(CorrectionMethod):
    needs_layer_grad = True

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The sum over the concepts of λ_k · penalty along h_k (along every direction of a concept subspace, see
        `directional_penalty`); one gradient serves every concept unless `class_specific` asks for each attacked
        class's own logit."""
        cfg: RRClarcConfig = self.config
        grads: dict[int | None, torch.Tensor] = {}
        total = None
        for concept in self.concepts:
            k = concept.attacked_class if cfg.class_specific else None
            if k not in grads:
                target = gradient_target(logits, cfg.gradient_target, batch.labels, batch.generator, k)
                (grads[k],) = torch.autograd.grad(target, acts, create_graph=True)
            lam = cfg.lam if concept.lam is None else concept.lam
            term = lam * directional_penalty(grads[k].float(), concept.directions, cfg.aggregation)
            total = term if total is None else total + term
        return total


@register_method("aclarc", config=AClarcConfig, description="A-ClArC: add the artifact to clean samples' activations")
class AClarc(CorrectionMethod):
    needs_concept_stats = True

    def transform(self, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Each concept in turn: the samples without its artifact are moved along its CAV to its artifact mean (along
        the CAV alone, also for a concept subspace: the statistics are of its projection)."""
        for k, concept in enumerate(self.concepts):
            clean = ~batch.has_artifact[:, k].to(acts.device)
            if not clean.any():
                continue
            h, target = concept.h.to(acts.dtype), concept.artifact_mean.to(acts.dtype)
            shifted = project_along(acts, h, target, self.config.strength)
            acts = torch.where(clean.view(-1, *([1] * (acts.ndim - 1))), shifted, acts)
        return acts


@register_method("pclarc", config=PClarcConfig, description="P-ClArC: project the artifact out (training-free)")
class PClarc(CorrectionMethod):
    needs_concept_stats = True
    trains = False

    def edit(self, module: nn.Module, layer: str) -> None:
        """One projection along all the concepts' CAVs at once (each set to its clean mean, within their span); a
        concept subspace is projected along its CAV alone, whose statistics the run measured."""
        hs = torch.stack([c.h for c in self.concepts])
        attach_projection(module, layer, hs, torch.stack([c.clean_mean for c in self.concepts]))


@register_method(
    "rrr",
    config=RRRConfig,
    description="RRR: penalise input gradients inside artifact masks",
    penalty_weight="lam",
)
class RRR(CorrectionMethod):
    needs_input_grad = True
    needs_masks = True

    @property
    def mask_source(self) -> str:
        return self.config.mask_source

    def penalty(self, logits: torch.Tensor, acts: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = torch.log_softmax(logits, dim=1).sum()
        (grad,) = torch.autograd.grad(target, batch.images, create_graph=True)
        inside = grad.float() * batch.masks.unsqueeze(1)
        return self.config.lam * inside.pow(2).sum(dim=(1, 2, 3)).mean()
