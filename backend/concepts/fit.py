"""Fitting a concept end to end: concept labels of samples -> cached activations -> CAV -> its quality figures.

The CLI (`python -m backend cav`) and the dashboard both call `fit_concept`; the math lives in `cav` and `quality`,
label files in `labels`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import get_args

import numpy as np

from backend.concepts.activation_cache import cached_activations
from backend.concepts.activations import DEFAULT_POOLING
from backend.concepts.cav import DEFAULT_SCOPE, Cav, CavConfig, CavScope, fit_cav
from backend.concepts.labels import check_known_ids, infer_attacked_class
from backend.concepts.quality import Significance, alignment, can_test_significance, separability_auc, significance
from backend.concepts.summary import CavSummary
from backend.data import ClarcDataset, SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel
from backend.progress import ProgressCallback

__all__ = ["ConceptFit", "concept_samples", "fit_concept"]


@dataclass(frozen=True)
class ConceptFit:
    """A fitted CAV with its quality: AUC on the fitting samples and, in the controlled setting, on held-out
    validation samples and its alignment with the planted artifact; the significance test against random CAVs."""

    cav: Cav
    train_auc: float
    held_out_auc: float | None
    alignment: float | None
    significance: Significance | None

    def summary(self, **more) -> CavSummary:
        """The CAV's summary with its quality figures (and `more`: name, source)."""
        sig = self.significance
        return CavSummary.of(
            self.cav,
            fit_seconds=self.cav.fit_seconds,
            params=self.cav.params,
            train_auc=self.train_auc,
            held_out_auc=self.held_out_auc,
            alignment=self.alignment,
            significance=None if sig is None else {"score": sig.score, "p_value": sig.p_value},
            **more,
        )


def concept_samples(
    view: SplitView, labels: Mapping[str, int], scope: str, attacked_class: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Which samples of `view` a CAV is fitted on, their concept labels, and the attacked class. The samples are
    those of the attacked class (`scope="attacked_class"`, the seed's default) or all (`"all"`); each is 1 if
    annotated as showing the concept, else 0 (annotated clean or not annotated: the rest of the scope, as in the
    seed's code). Labels of samples outside `view` are ignored."""
    if scope not in get_args(CavScope):
        raise ConfigError(f"unknown CAV scope {scope!r}; choose one of {', '.join(get_args(CavScope))}")
    flagged = np.array([labels.get(sid) == 1 for sid in view.sample_ids], dtype=bool)
    if flagged.sum() < 2:
        raise ConfigError(
            f"a CAV needs at least 2 samples labelled as showing the concept in the {view.split} split; "
            f"{int(flagged.sum())} are"
        )
    attacked = attacked_class or infer_attacked_class(labels, view)
    if attacked not in view.classes:
        raise ConfigError(f"unknown attacked class {attacked!r}; the classes are {list(view.classes)}")
    members = np.arange(len(view))
    if scope == "attacked_class":
        members = np.flatnonzero(view.labels == view.classes.index(attacked))
    y = flagged[members].astype(np.int64)
    if y.sum() < 2 or (1 - y).sum() < 2:
        where = f"class {attacked}" if scope == "attacked_class" else f"the {view.split} split"
        raise ConfigError(
            f"a CAV needs at least 2 samples with the concept and 2 without in {where}; it has {int(y.sum())} with "
            f"and {int((1 - y).sum())} without (choose another attacked class, or the scope 'all')"
        )
    return members, y, attacked


def fit_concept(
    model: LoadedModel,
    dataset: ClarcDataset,
    labels: Mapping[str, int],
    *,
    split: str = "train",
    layer: str | None = None,
    pooling: str = DEFAULT_POOLING,
    scope: str = DEFAULT_SCOPE,
    attacked_class: str | None = None,
    config: CavConfig | None = None,
    concept: str = "artifact",
    n_random: int | None = None,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> ConceptFit:
    """Fit a CAV for `labels` (sample id -> 0/1) on the samples of `split` in `scope` (see `concept_samples`) in
    `layer`, and measure how good it is. `n_random` random CAVs test its significance (default: 100 for the pattern
    kind, whose fit is instant, so p can reach 0.01; 20 for the filters, which search a grid each; 0 skips)."""
    layer = layer or model.default_layer
    view = dataset.split(split)
    check_known_ids(dataset, labels)
    members, y, attacked = concept_samples(view, labels, scope, attacked_class)
    acts = cached_activations(
        model, view, dataset.dataset_id, layer, pooling, workspace=workspace, on_progress=on_progress
    )
    x = np.asarray(acts.values)[members]
    ids = tuple(view.sample_ids[i] for i in members)
    cav = fit_cav(x, y, config, layer=layer, pooling=pooling, concept=concept, sample_ids=ids)
    concept_ids = tuple(sid for sid, flag in zip(ids, y) if flag)
    cav = replace(cav, scope=scope, attacked_class=attacked, concept_ids=concept_ids)
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
    if n_random is None:
        n_random = 100 if cav.kind == "pattern" else 20
    sig = significance(x, y, config, n_random=n_random) if n_random > 0 and can_test_significance(y) else None
    return ConceptFit(
        cav=cav,
        train_auc=separability_auc(cav.scores(x), y),
        held_out_auc=held_out_auc,
        alignment=aligned,
        significance=sig,
    )
