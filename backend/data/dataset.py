"""The dataset interface every source shares: class names, splits with stable sample ids, artifact views."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from backend.data.spec import DatasetSpec
from backend.data.views import SPLITS, Attack, Normalization, PlantedAttack, Planting, SplitView, planted_subset
from backend.errors import ConfigError

__all__ = ["ClarcDataset", "SplitData"]

# (sample ids, labels, image loader by index within the split)
SplitData = tuple[tuple[str, ...], np.ndarray, Callable[[int], np.ndarray]]


class ClarcDataset(ABC):
    """A labelled image dataset with train/val/test splits and an optional planted artifact."""

    def __init__(self, spec: DatasetSpec, classes: tuple[str, ...]) -> None:
        self.spec = spec
        self.classes = classes
        self.image_size = spec.size
        self.planting = Planting(spec.artifact, spec.p, spec.classes) if spec.artifact else None
        if self.planting:
            missing = [c for c in self.planting.classes if c not in classes]
            if missing:
                raise ConfigError(f"cannot plant {spec.artifact} into {missing}: the classes are {list(classes)}")
        self._splits: dict[str, SplitData] = {}

    @property
    def dataset_id(self) -> str:
        return self.spec.dataset_id

    @abstractmethod
    def _load_split(self, split: str) -> SplitData:
        """Sample ids, labels and an image loader of one split (called once per split)."""

    def _split_data(self, split: str) -> SplitData:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}")
        if split not in self._splits:
            self._splits[split] = self._load_split(split)
        return self._splits[split]

    def split(
        self,
        split: str,
        view: str = "as_planted",
        normalization: Normalization | None = None,
        artifact: str | None = None,
        attack: Attack | None = None,
    ) -> SplitView:
        """A view of one split. The `attacked` view draws `attack` (an attack of `data.transplant`), else `artifact`
        (a registered one, needed for real datasets without a planting), else the planted artifact into every
        sample; the `as_planted` view plants only into train and val."""
        ids, labels, loader = self._split_data(split)
        name = artifact or (self.planting.artifact if self.planting else None)
        drawn = attack or (PlantedAttack(name, self.spec.seed) if name else None)
        if view == "attacked":
            if drawn is None:
                raise ConfigError("this dataset plants no artifact: name one, or give an attack, for the attacked view")
            has = np.ones(len(ids), dtype=bool)
        elif view == "as_planted" and self.planting and split in ("train", "val"):
            has = planted_subset(labels, self.classes, self.planting, self.spec.seed, split)
        else:
            has = np.zeros(len(ids), dtype=bool)
        return SplitView(
            split=split,
            view=view,
            classes=self.classes,
            sample_ids=ids,
            labels=labels,
            load_image=loader,
            attack=drawn,
            has_artifact=has,
            normalization=normalization,
        )

    def describe(self) -> dict:
        """Spec, classes and per-split class counts, for model cards and the app."""
        counts = {s: self.split(s).class_counts() for s in SPLITS}
        return {
            "spec": str(self.spec),
            "dataset_id": self.dataset_id,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "planting": None
            if self.planting is None
            else {
                "artifact": self.planting.artifact,
                "p": self.planting.p,
                "classes": list(self.planting.classes),
            },
            "counts": counts,
        }
