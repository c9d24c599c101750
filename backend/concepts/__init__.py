"""Concepts: latent activations and their cache, CAV kinds, how good a CAV is, the fit pipeline from labels to a
judged CAV, concept label files, and 2-D embeddings of features."""

from backend.concepts.activation_cache import (
    PassCancelled,
    activation_entry,
    activations_complete,
    cached_activations,
    collect_in_one_pass,
    read_partial,
)
from backend.concepts.activations import (
    DEFAULT_POOLING,
    POOLINGS,
    ActivationSet,
    CavPooling,
    Pooling,
    collect_activations,
)
from backend.concepts.cav import (
    DEFAULT_SCOPE,
    Cav,
    CavConfig,
    CavKind,
    CavScope,
    cav_kinds,
    fit_cav,
    load_cav,
    register_cav,
    validate_concept_data,
)
from backend.concepts.embedding import project_embedding
from backend.concepts.fit import ConceptFit, concept_samples, fit_concept
from backend.concepts.labels import (
    check_known_ids,
    infer_attacked_class,
    planted_labels,
    read_concept_labels,
    write_concept_labels,
)
from backend.concepts.library import CavLibrary, SavedCav, check_cav_fits, resolve_cav
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
from backend.concepts.summary import CavSummary

__all__ = [
    "CavSummary",
    "CavLibrary",
    "SavedCav",
    "check_cav_fits",
    "resolve_cav",
    "DEFAULT_POOLING",
    "DEFAULT_SCOPE",
    "CavScope",
    "check_known_ids",
    "concept_samples",
    "infer_attacked_class",
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
    "PassCancelled",
    "activation_entry",
    "activations_complete",
    "cached_activations",
    "collect_in_one_pass",
    "read_partial",
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
