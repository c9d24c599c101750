"""One frozen config per correction method and one for the shared fine-tuning loop; choices are validated Literals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from backend.errors import ConfigError

__all__ = [
    "GradientTarget",
    "Aggregation",
    "Trainable",
    "LoopConfig",
    "FinetuneConfig",
    "RRClarcConfig",
    "AClarcConfig",
    "PClarcConfig",
    "RRRConfig",
]

GradientTarget = Literal["max_logit", "target_logit", "all_logits", "all_logits_random", "logprobs"]
Aggregation = Literal["l1", "l2", "cosine"]
Trainable = Literal["head", "above_layer", "all"]
Optimizer = Literal["adam", "sgd"]
MaskSource = Literal["ground_truth", "concept"]


def _choice(value: str, kind, name: str) -> None:
    if value not in get_args(kind):
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(get_args(kind))}")


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


@dataclass(frozen=True)
class LoopConfig:
    """The shared fine-tuning loop. `trainable`: `head` (linear layers only; convolutions and batch norm frozen, as in
    the paper), `above_layer` (everything above the CAV layer) or `all`. With the layers below the CAV layer frozen,
    `cache_activations` trains from their cached output: exact, and much faster."""

    epochs: int = 20
    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    batch_size: int = 64
    seed: int = 0
    trainable: Trainable = "head"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = True
    cache_activations: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")
        _positive(self.lr, "lr")
        _choice(self.optimizer, Optimizer, "optimizer")
        _choice(self.trainable, Trainable, "trainable")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device {self.device!r}; use auto, cpu or cuda")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning with no penalty: the control showing that the penalty, not the fine-tuning, removes the bias."""


@dataclass(frozen=True)
class RRClarcConfig:
    """loss = CE + lam * penalty; the penalty is the directional derivative along the CAV of the gradient target,
    taken w.r.t. the CAV layer's output at every spatial position and aggregated by `aggregation`.
    `class_specific` penalises only the attacked class's logit. `logprobs` is the sum of all log-probabilities."""

    lam: float = 1e5
    gradient_target: GradientTarget = "logprobs"
    aggregation: Aggregation = "l2"
    class_specific: bool = False

    def __post_init__(self) -> None:
        _positive(self.lam, "lam", allow_zero=True)
        _choice(self.gradient_target, GradientTarget, "gradient target")
        _choice(self.aggregation, Aggregation, "aggregation")


@dataclass(frozen=True)
class AClarcConfig:
    """Fine-tune with the artifact added along the CAV to the activations of clean samples (`strength` 1: moved to
    the artifact samples' mean projection), so the artifact direction stops predicting the class."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        _positive(self.strength, "strength")


@dataclass(frozen=True)
class PClarcConfig:
    """Training-free: project the CAV component of the layer's activations onto its mean over clean samples."""


@dataclass(frozen=True)
class RRRConfig:
    """Right for the Right Reasons: CE + lam * squared input gradient of the summed log-probabilities inside the
    artifact masks (ground truth where planted, else concept masks from the attribution module)."""

    lam: float = 10.0
    mask_source: MaskSource = "ground_truth"

    def __post_init__(self) -> None:
        _positive(self.lam, "lam", allow_zero=True)
        _choice(self.mask_source, MaskSource, "mask source")
