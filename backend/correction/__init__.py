"""Correction: RR-ClArC and its baselines (A-ClArC, P-ClArC, RRR, plain fine-tuning) in one registry, sharing one
fine-tuning loop with two batch sources (cached layer outputs or images)."""

from backend.correction.batches import CachedLayerSource, ImageSource, LayerTap, tap_layer
from backend.correction.configs import (
    AClarcConfig,
    FinetuneConfig,
    LoopConfig,
    PClarcConfig,
    RRClarcConfig,
    RRRConfig,
)
from backend.correction.loop import (
    ConceptTarget,
    CorrectionCancelled,
    CorrectionFailed,
    CorrectionResult,
    correct,
    same_layer,
)
from backend.correction.methods import (
    Batch,
    ConceptInputs,
    CorrectionMethod,
    MethodInfo,
    get_method,
    method_names,
    register_method,
)
from backend.correction.penalties import directional_penalty, gradient_target

__all__ = [
    "ConceptTarget",
    "AClarcConfig",
    "Batch",
    "CachedLayerSource",
    "ConceptInputs",
    "CorrectionCancelled",
    "CorrectionFailed",
    "CorrectionMethod",
    "CorrectionResult",
    "FinetuneConfig",
    "ImageSource",
    "LayerTap",
    "LoopConfig",
    "MethodInfo",
    "PClarcConfig",
    "RRClarcConfig",
    "RRRConfig",
    "correct",
    "directional_penalty",
    "get_method",
    "gradient_target",
    "method_names",
    "register_method",
    "same_layer",
    "tap_layer",
]
