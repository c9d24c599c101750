"""One frozen config per correction method and one for the shared fine-tuning loop. Each field declares its default,
choices and help text once (`backend.options`); the CLI and the dashboard's forms are built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.errors import ConfigError
from backend.options import check_choices, option

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

GradientTarget = Literal["max_logit", "target_logit", "all_logits", "all_logits_random", "random_logit", "logprobs"]
Aggregation = Literal["l1", "l2", "cosine", "l1_mean", "l2_mean", "cosine_mean"]
Trainable = Literal["head", "above_layer", "all"]
Optimizer = Literal["adam", "sgd"]
MaskSource = Literal["auto", "ground_truth", "concept"]
Device = Literal["auto", "cpu", "cuda"]


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


@dataclass(frozen=True)
class LoopConfig:
    """The shared fine-tuning loop. `trainable`: `head` (linear layers only; convolutions and batch norm frozen, as in
    the paper), `above_layer` (everything above the CAV layer) or `all`. With the layers below the CAV layer frozen,
    `cache_activations` trains from their cached output: exact, and much faster."""

    epochs: int = option(20, help="passes over the training split")
    lr: float = option(1e-3, help="learning rate")
    optimizer: Optimizer = option("adam", help="optimiser of the fine-tuning")
    batch_size: int = option(64, help="images per step")
    seed: int = option(0, help="random seed (data order, dropout)")
    trainable: Trainable = option(
        "head",
        help="head: linear layers only (the paper's setting, fast); above_layer or all: more capacity, slower",
    )
    device: Device = option("auto", help="auto takes the GPU when there is one")
    mixed_precision: bool = option(True, help="bf16 autocast on the GPU (ignored on the CPU)")
    cache_activations: bool = option(
        True, help="train from cached activations of the frozen layers: exact and much faster", flags=("--cache",)
    )
    augment: float = option(
        0.0,
        label="augment (share given pasted artifacts)",
        help="share of the training images without the artifact that are also trained on with an annotated "
        "artifact pasted in, labels kept, so the model sees the artifact in every class (0: off; needs images)",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")
        if not 0 <= self.augment <= 1:
            raise ConfigError(f"augment is a share of the training images, in [0, 1]; got {self.augment}")
        _positive(self.lr, "lr")
        check_choices(self)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning with no penalty: the control showing that the penalty, not the fine-tuning, removes the bias."""


@dataclass(frozen=True)
class RRClarcConfig:
    """loss = CE + lam * penalty; the penalty is the directional derivative along the CAV of the gradient target,
    taken w.r.t. the CAV layer's output at every spatial position and aggregated by `aggregation`.
    `class_specific` penalises only the attacked class's logit. `logprobs` is the sum of all log-probabilities."""

    lam: float = option(
        1e5,
        label="λ (lam)",
        help="penalty weight λ: larger removes more of the artifact's influence; too large costs clean accuracy",
    )
    gradient_target: GradientTarget = option(
        "logprobs",
        help="which output's gradient is penalised along the CAV: logprobs (the sum of all log-probabilities), "
        "all_logits, all_logits_random (each logit with a random sign, the seed's), random_logit (one random "
        "class per sample), max_logit, target_logit",
    )
    aggregation: Aggregation = option(
        "l2",
        help="how the directional derivatives are combined: l2, l1, cosine at every position; l2_mean, l1_mean, "
        "cosine_mean (the seed's) on the gradient averaged over the positions first",
    )
    class_specific: bool = option(False, help="penalise only the class the artifact is tied to")

    def __post_init__(self) -> None:
        _positive(self.lam, "lam", allow_zero=True)
        check_choices(self)


@dataclass(frozen=True)
class AClarcConfig:
    """Fine-tune with the artifact added along the CAV to the activations of clean samples (`strength` 1: moved to
    the artifact samples' mean projection), so the artifact direction stops predicting the class."""

    strength: float = option(
        1.0, help="how far clean samples are moved along the CAV (1: to the artifact samples' mean)"
    )

    def __post_init__(self) -> None:
        _positive(self.strength, "strength")


@dataclass(frozen=True)
class PClarcConfig:
    """Training-free: project the CAV component of the layer's activations onto its mean over clean samples."""


@dataclass(frozen=True)
class RRRConfig:
    """Right for the Right Reasons: CE + lam * squared input gradient of the summed log-probabilities inside the
    artifact masks (ground truth where planted, else concept masks from the attribution module)."""

    lam: float = option(10.0, label="λ (lam)", help="penalty weight λ on the input gradients inside the masks")
    mask_source: MaskSource = option(
        "auto",
        help="where the artifact is in the images: ground-truth masks where the dataset plants it (auto, "
        "ground_truth), else concept heatmaps (auto, concept)",
    )

    def __post_init__(self) -> None:
        _positive(self.lam, "lam", allow_zero=True)
        check_choices(self)
