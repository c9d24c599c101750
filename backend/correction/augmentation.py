"""Where a concept's artifact is in the training images, and counterfactual augmentation: the annotated artifacts
pasted into a share of the training images without them, of every class, labels kept.

A model that saw an artifact only on one class has never seen it on the others; a penalty along its CAV removes the
direction, not that blind spot. With the artifact pasted into every class's images, the fine-tuning itself shows the
model that the artifact says nothing about the class (measured on `bench natural`: the lesion-overlapping artifacts
need it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.attribution import concept_masks
from backend.concepts import Cav
from backend.data import ClarcDataset
from backend.data.transplant import Donor, TransplantAttack
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel

__all__ = ["MAX_DONORS", "TrainingSamples", "artifact_masks", "pasted_copies"]

MAX_DONORS = 256  # annotated images whose artifact is cut out per concept (each costs a heatmap)


def artifact_masks(
    model: LoadedModel, view: SplitView, cavs: Sequence[Cav], has_artifact: np.ndarray, source: str = "auto"
) -> np.ndarray:
    """Artifact masks (N, S, S) of the flagged training samples, every concept's together: ground truth where
    planted (`auto` and `ground_truth`; the first concept is the planted one), else where each concept's heatmaps
    put it (`concept`)."""
    planted = view.attack is not None
    if source == "ground_truth" and not planted:
        raise ConfigError("ground-truth masks exist only for planted artifacts; use mask_source='concept' or 'auto'")
    size = model.meta.input_size
    masks = np.zeros((len(view), size, size), dtype=bool)
    for k, cav in enumerate(cavs):
        chosen = np.flatnonzero(has_artifact[:, k])
        masks[chosen] |= _masks_of(model, view, cav, chosen, ground_truth=_planted(view, k) and source != "concept")
    return masks


def _planted(view: SplitView, k: int) -> bool:
    """Whether concept `k` is the view's planted artifact (the first concept, where one is planted)."""
    return k == 0 and view.attack is not None


def _masks_of(model: LoadedModel, view: SplitView, cav: Cav, indices: np.ndarray, *, ground_truth: bool) -> np.ndarray:
    """Masks (len(indices), S, S) of one concept's artifact in those samples: planted or from its heatmaps."""
    if not len(indices):
        size = model.meta.input_size
        return np.zeros((0, size, size), dtype=bool)
    if ground_truth:
        return np.stack([view.mask(int(i)) for i in indices])
    return concept_masks(model, view, indices, cav.vector, cav.layer)


class TrainingSamples(Dataset):
    """Training samples of the full-forward path: image, label, artifact flags (one per concept) and artifact mask
    (or an empty one), for `indices` of `view` (default: all of it)."""

    def __init__(
        self,
        view: SplitView,
        has_artifact: np.ndarray,
        masks: np.ndarray | None,
        indices: np.ndarray | None = None,
    ) -> None:
        self.view, self.has_artifact, self.masks = view, has_artifact, masks
        self.indices = np.arange(len(view)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(has_artifact) != len(self.indices) or (masks is not None and len(masks) != len(self.indices)):
            raise ConfigError("one artifact flag row and mask per training sample")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, n: int):
        i = int(self.indices[n])
        mask = torch.from_numpy(self.masks[n].astype(np.float32)) if self.masks is not None else torch.zeros(0)
        return self.view[i][0], int(self.view.labels[i]), torch.from_numpy(self.has_artifact[n]), mask


def pasted_copies(
    model: LoadedModel,
    dataset: ClarcDataset,
    view: SplitView,
    cavs: Sequence[Cav],
    has_artifact: np.ndarray,
    share: float,
    seed: int,
    *,
    with_masks: bool,
) -> list[TrainingSamples]:
    """Per concept: a share `share` of the training samples without any concept's artifact, each with one of its
    annotated artifacts pasted in (cut where its masks put it, from up to MAX_DONORS annotated images), labels kept
    and flagged as showing that artifact. Deterministic in `seed`."""
    if not 0 < share <= 1:
        raise ConfigError(f"the share of training images to paste artifacts into must be in (0, 1], got {share}")
    clean = np.flatnonzero(~has_artifact.any(axis=1))
    if not len(clean):
        raise ConfigError("every training sample shows an artifact: there is no image to paste one into")
    rng = np.random.default_rng([seed, 0xA06])
    copies = []
    for k, cav in enumerate(cavs):
        donors_at = np.flatnonzero(has_artifact[:, k])
        if len(donors_at) > MAX_DONORS:
            donors_at = np.sort(rng.choice(donors_at, MAX_DONORS, replace=False))
        masks = _masks_of(model, view, cav, donors_at, ground_truth=_planted(view, k))
        donors = [Donor(view.sample_ids[i], view.image(i), m) for i, m in zip(donors_at, masks)]
        attack = TransplantAttack(donors, seed=seed, name=f"{cav.concept or 'artifact'} pasted")
        pasted = dataset.split("train", "attacked", view.normalization, attack=attack)
        chosen = clean[rng.random(len(clean)) < share]
        row = np.zeros((len(chosen), has_artifact.shape[1]), dtype=bool)
        row[:, k] = True
        pasted_masks = np.stack([pasted.mask(int(i)) for i in chosen]) if with_masks and len(chosen) else None
        copies.append(TrainingSamples(pasted, row, pasted_masks, chosen))
    return copies
