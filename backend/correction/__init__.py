"""Correction: RR-ClArC and its baselines (A-ClArC, P-ClArC, RRR, plain fine-tuning) in one registry, sharing one
fine-tuning loop."""

from backend.correction.configs import (
    AClarcConfig,
    FinetuneConfig,
    LoopConfig,
    PClarcConfig,
    RRClarcConfig,
    RRRConfig,
)
from backend.correction.loop import CorrectionCancelled, CorrectionFailed, CorrectionResult, correct
from backend.correction.methods import (
    ConceptProjection,
    attach_projection,
    directional_penalty,
    get_method,
    gradient_target,
    method_names,
    register_method,
)

__all__ = [
    "AClarcConfig",
    "ConceptProjection",
    "CorrectionCancelled",
    "CorrectionFailed",
    "CorrectionResult",
    "FinetuneConfig",
    "LoopConfig",
    "PClarcConfig",
    "RRClarcConfig",
    "RRRConfig",
    "attach_projection",
    "correct",
    "directional_penalty",
    "get_method",
    "gradient_target",
    "method_names",
    "register_method",
]
