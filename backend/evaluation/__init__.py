"""Evaluation: the model's predictions on a view, where attacked test images come from (planted, supplied,
transplanted), and the before/after figures of a correction (clean and attacked accuracy, per class and as confusion
matrices, TCAV, R_bias) as functions over models and dataset views."""

from backend.evaluation.attacks import (
    AttackConfig,
    AttackedSet,
    AttackSource,
    attacked_set,
    describe_attack,
    estimate_notice,
)
from backend.evaluation.coverage import (
    LOW_COVERAGE,
    MAX_PAIRS,
    CavCoverage,
    cav_coverage,
    coverage_is_low,
    paired_changes,
    subspace_cav,
    training_pairs,
)
from backend.evaluation.fidelity import EVIDENCE_LIMIT, TransplantCheck
from backend.evaluation.figures import HEADLINE, Figure, figures_of
from backend.evaluation.intervals import SampleHits, accuracy_interval, gap_closed_interval
from backend.evaluation.metrics import (
    FIGURES,
    EvaluationResult,
    accuracy,
    clean_accuracy,
    clean_and_attacked_accuracy,
    confusion_matrix,
    directional_derivatives,
    evaluate,
    per_class_accuracy,
)
from backend.evaluation.predictions import Predictions, cached_predictions, predict_logits, predictions_so_far

__all__ = [
    "EVIDENCE_LIMIT",
    "LOW_COVERAGE",
    "coverage_is_low",
    "MAX_PAIRS",
    "CavCoverage",
    "cav_coverage",
    "paired_changes",
    "subspace_cav",
    "training_pairs",
    "FIGURES",
    "HEADLINE",
    "Figure",
    "figures_of",
    "AttackConfig",
    "AttackSource",
    "AttackedSet",
    "describe_attack",
    "estimate_notice",
    "EvaluationResult",
    "Predictions",
    "SampleHits",
    "TransplantCheck",
    "accuracy_interval",
    "gap_closed_interval",
    "accuracy",
    "attacked_set",
    "cached_predictions",
    "clean_accuracy",
    "clean_and_attacked_accuracy",
    "confusion_matrix",
    "directional_derivatives",
    "evaluate",
    "per_class_accuracy",
    "predict_logits",
    "predictions_so_far",
]
