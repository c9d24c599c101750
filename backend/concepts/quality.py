"""How good a CAV is, as pure functions over arrays: separability, ground-truth alignment, divergence between
kinds, significance against random splits, and the ranking behind "suggest the next samples to annotate"."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from backend.concepts.cav import CavConfig, fit_cav, validate_concept_data
from backend.errors import ConfigError

__all__ = [
    "can_test_significance",
    "Alignment",
    "Significance",
    "separability_auc",
    "alignment",
    "divergence",
    "significance",
    "suggest_samples",
    "roc_points",
]


@dataclass(frozen=True)
class Alignment:
    """Cosine between a CAV and the true artifact direction: `mean` for the mean activation difference,
    `per_sample` (N,) for each sample's own difference a(x with artifact) - a(x)."""

    mean: float
    per_sample: np.ndarray


@dataclass(frozen=True)
class Significance:
    """Held-out AUC of the concept's CAV, the null distribution of AUCs of CAVs fitted on random splits of the same
    samples, and the permutation p-value (small: the concept is distinguishable from random)."""

    score: float
    null: np.ndarray
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def separability_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of concept scores (N,), concept (1) vs clean (0); 0.5 is chance, 1 perfect separation."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) != 2:
        raise ConfigError("AUC needs samples with and without the concept")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def _cosine_rows(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1) * np.linalg.norm(direction)
    return np.divide(vectors @ direction, norms, out=np.zeros(vectors.shape[:-1]), where=norms > 0)


def alignment(vector: np.ndarray, with_artifact: np.ndarray, without_artifact: np.ndarray) -> Alignment:
    """Alignment of a CAV with the artifact's true effect, from activations (N, C) of the same samples with and
    without the artifact (the controlled setting, where both are known)."""
    with_artifact, without_artifact = np.asarray(with_artifact, np.float64), np.asarray(without_artifact, np.float64)
    if with_artifact.shape != without_artifact.shape or with_artifact.ndim != 2:
        raise ConfigError(f"need paired activations (N, C); got {with_artifact.shape} and {without_artifact.shape}")
    diff = with_artifact - without_artifact
    vector = np.asarray(vector, np.float64)
    mean = float(_cosine_rows(diff.mean(axis=0)[None], vector)[0])
    return Alignment(mean=mean, per_sample=_cosine_rows(diff, vector))


def divergence(vectors: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Pairwise cosine similarity between CAVs (e.g. of different kinds fitted on the same data)."""
    names = list(vectors)
    unit = {n: np.asarray(vectors[n], np.float64) / np.linalg.norm(vectors[n]) for n in names}
    return {a: {b: float(unit[a] @ unit[b]) for b in names} for a in names}


def _held_out(n: int, test_fraction: float) -> int:
    return max(1, int(round(test_fraction * n)))


def can_test_significance(labels: np.ndarray, test_fraction: float = 0.3) -> bool:
    """Whether each group keeps at least 2 samples to fit on after holding out its share."""
    labels = np.asarray(labels)
    return all(n - _held_out(n, test_fraction) >= 2 for n in (int((labels == 1).sum()), int((labels == 0).sum())))


def significance(
    activations: np.ndarray,
    labels: np.ndarray,
    config: CavConfig | None = None,
    *,
    n_random: int = 50,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> Significance:
    """Permutation test in the spirit of TCAV: fit the concept's CAV on a training part and score it (AUC) on the
    held-out part; repeat with the labels randomly re-split over the same samples (same group sizes)."""
    config = config or CavConfig()
    x, y = validate_concept_data(activations, labels)
    if n_random < 1 or not 0 < test_fraction < 1:
        raise ConfigError("need n_random >= 1 and 0 < test_fraction < 1")
    rng = np.random.default_rng(seed)

    def stratified_test(labels_: np.ndarray) -> np.ndarray:
        test = np.zeros(len(labels_), dtype=bool)
        for group in (0, 1):
            members = rng.permutation(np.flatnonzero(labels_ == group))
            test[members[: _held_out(len(members), test_fraction)]] = True
        return test

    def held_out_auc(labels_: np.ndarray) -> float:
        """Fit on a stratified part, score on the rest: random labels get the same group sizes on both sides."""
        test = stratified_test(labels_)
        cav = fit_cav(x[~test], labels_[~test], config)
        return separability_auc(x[test] @ cav.vector, labels_[test])

    if not can_test_significance(y, test_fraction):
        raise ConfigError("too few samples of one group to hold some out for the significance test")
    score = held_out_auc(y)
    null = np.array([held_out_auc(rng.permutation(y)) for _ in range(n_random)])
    p_value = (1 + int((null >= score).sum())) / (n_random + 1)
    return Significance(score=score, null=null, p_value=p_value)


def suggest_samples(
    scores: np.ndarray, sample_ids: Sequence[str], labelled: Collection[str], k: int = 24
) -> list[tuple[str, float]]:
    """The `k` not-yet-labelled samples with the highest concept scores, best first: what to annotate next."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(sample_ids):
        raise ConfigError(f"{len(scores)} scores for {len(sample_ids)} samples")
    known = set(labelled)
    open_ = np.array([sid not in known for sid in sample_ids], dtype=bool)
    candidates = np.flatnonzero(open_)
    order = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
    return [(sample_ids[i], float(scores[i])) for i in order]


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of the ROC curve of scores (N,) against binary labels (N,), 1 positive."""
    from sklearn.metrics import roc_curve

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ConfigError(f"need one score per label: scores {scores.shape}, labels {labels.shape}")
    if not np.isin(labels, [0, 1]).all() or len(np.unique(labels)) != 2:
        raise ConfigError("a ROC curve needs binary labels (0/1) with both classes present")
    if not np.isfinite(scores).all():
        raise ConfigError("scores contain NaN or infinite values")
    fpr, tpr, _ = roc_curve(labels.astype(int), scores)
    return fpr, tpr
