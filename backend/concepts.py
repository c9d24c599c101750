"""Fitting a concept end to end: concept labels of samples -> cached activations -> CAV -> its quality figures.

The CLI (`python -m backend cav`) and the dashboard both call `fit_concept`; the math lives in `cav` and
`cav_quality`, the I/O (label files) here at the edge.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.activations import cached_activations
from backend.cav import Cav, CavConfig, fit_cav
from backend.cav_quality import Significance, alignment, can_test_significance, separability_auc, significance
from backend.data.dataset import ClarcDataset
from backend.errors import ConfigError
from backend.models.checkpoint import LoadedModel
from backend.progress import ProgressCallback

__all__ = ["ConceptFit", "planted_labels", "read_concept_labels", "fit_concept"]


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


def planted_labels(dataset: ClarcDataset, split: str = "train") -> dict[str, int]:
    """Concept labels from the planted artifact: 1 where the biased view of the split carries it."""
    if dataset.planting is None:
        raise ConfigError("this dataset plants no artifact: give concept labels (a CSV of sample_id,label)")
    view = dataset.split(split)
    return {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)}


def read_concept_labels(path: str | os.PathLike) -> dict[str, int]:
    """A CSV with columns `sample_id,label` (label 1: shows the concept, 0: does not)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read concept labels {path}: {exc}") from exc
    if not rows or not {"sample_id", "label"} <= set(rows[0]):
        raise ConfigError(f"{path} needs a header `sample_id,label` and at least one row")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        value = (row["label"] or "").strip()
        if value not in ("0", "1"):
            raise ConfigError(f"{path} line {line}: label must be 0 or 1, got {value!r}")
        labels[row["sample_id"].strip()] = int(value)
    return labels


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
