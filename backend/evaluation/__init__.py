"""Evaluation: the model's predictions on a view, and the before/after figures of a correction (clean and attacked
accuracy, per class, TCAV, R_bias) as functions over models and dataset views."""

from backend.evaluation.metrics import (
    EvaluationResult,
    accuracy,
    clean_and_attacked_accuracy,
    directional_derivatives,
    evaluate,
    per_class_accuracy,
)
from backend.evaluation.predictions import Predictions, cached_predictions, predict_logits

__all__ = [
    "EvaluationResult",
    "Predictions",
    "accuracy",
    "cached_predictions",
    "clean_and_attacked_accuracy",
    "directional_derivatives",
    "evaluate",
    "per_class_accuracy",
    "predict_logits",
]
