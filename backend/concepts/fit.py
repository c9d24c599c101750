"""Fitting a concept end to end: concept labels of samples -> cached activations -> CAV -> its quality figures.

The CLI (`python -m backend cav`) and the dashboard both call `fit_concept`; the math lives in `cav` and `quality`,
label files in `labels`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from backend.concepts.activations import cached_activations
from backend.concepts.cav import Cav, CavConfig, fit_cav
from backend.concepts.quality import Significance, alignment, can_test_significance, separability_auc, significance
from backend.data.dataset import ClarcDataset
from backend.errors import ConfigError
from backend.models import LoadedModel
from backend.progress import ProgressCallback

__all__ = ["ConceptFit", "fit_concept"]


@dataclass(frozen=True)
class ConceptFit:
    """A fitted CAV with its quality: AUC on the fitting samples and, in the controlled setting, on held-out
    validation samples and its alignment with the planted artifact; the significance test against random CAVs."""

    cav: Cav
    train_auc: float
    held_out_auc: float | None
    alignment: float | None
    significance: Significance | None

    def summary(self) -> dict:
        sig = self.significance
        return {
            "kind": self.cav.kind,
            "layer": self.cav.layer,
            "pooling": self.cav.pooling,
            "concept": self.cav.concept,
            "n_concept": self.cav.n_concept,
            "n_other": self.cav.n_other,
            "fit_seconds": self.cav.fit_seconds,
            "params": self.cav.params,
            "train_auc": self.train_auc,
            "held_out_auc": self.held_out_auc,
            "alignment": self.alignment,
            "significance": None if sig is None else {"score": sig.score, "p_value": sig.p_value},
        }


def fit_concept(
    model: LoadedModel,
    dataset: ClarcDataset,
    labels: Mapping[str, int],
    *,
    split: str = "train",
    layer: str | None = None,
    pooling: str = "max",
    config: CavConfig | None = None,
    concept: str = "artifact",
    n_random: int = 20,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> ConceptFit:
    """Fit a CAV for `labels` (sample id -> 0/1, ids of `split`) in `layer` and measure how good it is."""
    layer = layer or model.default_layer
    view = dataset.split(split)
    position = {sid: i for i, sid in enumerate(view.sample_ids)}
    unknown = [sid for sid in labels if sid not in position]
    if unknown:
        raise ConfigError(f"{len(unknown)} labelled samples are not in the {split} split (first: {unknown[:5]})")
    indices = np.array(sorted(position[sid] for sid in labels), dtype=np.int64)
    acts = cached_activations(
        model, view, dataset.dataset_id, layer, pooling, indices=indices, workspace=workspace, on_progress=on_progress
    )
    y = np.array([labels[sid] for sid in acts.sample_ids], dtype=np.int64)
    x = np.asarray(acts.values)
    cav = fit_cav(x, y, config, layer=layer, pooling=pooling, concept=concept, sample_ids=acts.sample_ids)
    held_out_auc = aligned = None
    if dataset.planting is not None:
        held_out = cached_activations(
            model, dataset.split("val"), dataset.dataset_id, layer, pooling, workspace=workspace
        )
        if 0 < held_out.has_artifact.sum() < len(held_out.has_artifact):
            held_out_auc = separability_auc(cav.scores(held_out.values), held_out.has_artifact)
        with_artifact, without = (
            cached_activations(
                model, dataset.split("test", test_view), dataset.dataset_id, layer, pooling, workspace=workspace
            ).values
            for test_view in ("attacked", "clean")
        )
        aligned = alignment(cav.vector, with_artifact, without).mean
    sig = significance(x, y, config, n_random=n_random) if n_random > 0 and can_test_significance(y) else None
    return ConceptFit(
        cav=cav,
        train_auc=separability_auc(cav.scores(x), y),
        held_out_auc=held_out_auc,
        alignment=aligned,
        significance=sig,
    )
