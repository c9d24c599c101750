"""Concepts: latent activations and their cache, CAV kinds, how good a CAV is, the fit pipeline from labels to a
judged CAV, concept label files, and 2-D embeddings of features."""

from backend.concepts.activations import (
    POOLINGS,
    ActivationSet,
    CavPooling,
    Pooling,
    cached_activations,
    collect_activations,
)
from backend.concepts.cav import (
    Cav,
    CavConfig,
    CavKind,
    cav_kinds,
    fit_cav,
    load_cav,
    register_cav,
    validate_concept_data,
)
from backend.concepts.embedding import project_embedding
from backend.concepts.fit import ConceptFit, fit_concept
from backend.concepts.labels import planted_labels, read_concept_labels, write_concept_labels
from backend.concepts.quality import (
    Alignment,
    Significance,
    alignment,
    can_test_significance,
    divergence,
    roc_points,
    separability_auc,
    significance,
    suggest_samples,
)

__all__ = [
    "POOLINGS",
    "ActivationSet",
    "Alignment",
    "Cav",
    "CavConfig",
    "CavKind",
    "CavPooling",
    "ConceptFit",
    "Pooling",
    "Significance",
    "alignment",
    "cached_activations",
    "can_test_significance",
    "cav_kinds",
    "collect_activations",
    "divergence",
    "fit_cav",
    "fit_concept",
    "load_cav",
    "planted_labels",
    "project_embedding",
    "read_concept_labels",
    "register_cav",
    "roc_points",
    "separability_auc",
    "significance",
    "suggest_samples",
    "validate_concept_data",
    "write_concept_labels",
]
