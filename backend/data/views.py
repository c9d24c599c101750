"""One split of a dataset as the model sees it: images with or without an artifact, labels, stable ids.

A `SplitView` is a torch Dataset. Three views of a split share the same underlying images:
- `as_planted`: the artifact sits in the planted subset only (the biased training distribution);
- `clean`: no sample carries a planted artifact;
- `attacked`: every sample carries an artifact: the planted (or a named) one, the controlled evaluation of the paper,
  or one cut from annotated training images or taken from the user's attacked copy (`data.transplant`), for data
  whose artifact nobody planted.
What an attack draws into a sample depends only on the attack and the sample id, so the attacked view of a sample is
the same in every run and every view.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.data.artifacts import apply_artifact, get_artifact
from backend.errors import ConfigError

__all__ = [
    "Attack",
    "PlantedAttack",
    "Split",
    "View",
    "SPLITS",
    "VIEWS",
    "Normalization",
    "Planting",
    "SplitView",
    "planted_subset",
]

Split = Literal["train", "val", "test"]
View = Literal["as_planted", "clean", "attacked"]
SPLITS: tuple[str, ...] = get_args(Split)
VIEWS: tuple[str, ...] = get_args(View)


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation of a model: x -> (x - mean) / std on [0, 1] images."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"normalization needs 3 means and 3 stds, got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"normalization std must be positive, got {self.std}")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise [0, 1] images of shape (..., 3, H, W)."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return (images - mean) / std


@dataclass(frozen=True)
class Planting:
    """Plant `artifact` into a fraction `p` of the training and validation samples of `classes`."""

    artifact: str
    p: float
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        get_artifact(self.artifact)  # raises on unknown names
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"planting fraction p must be in [0, 1], got {self.p}")
        if not self.classes:
            raise ConfigError("planting needs at least one class to plant the artifact into")


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def planted_subset(
    labels: np.ndarray, classes: tuple[str, ...], planting: Planting, seed: int, split: str
) -> np.ndarray:
    """Which samples carry the artifact in the `as_planted` view: exactly round(p * n) of each planted class."""
    unknown = [c for c in planting.classes if c not in classes]
    if unknown:
        raise ConfigError(f"cannot plant into unknown classes {unknown}; the dataset has {list(classes)}")
    planted = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng([seed, _stable_hash(split), _stable_hash(planting.artifact)])
    for name in planting.classes:
        members = np.flatnonzero(labels == classes.index(name))
        chosen = rng.permutation(members)[: int(round(planting.p * len(members)))]
        planted[chosen] = True
    return planted


class Attack(Protocol):
    """Something drawn into images: `apply` returns the changed image and the bool mask of what changed; `name`
    says what it is, `key` identifies it exactly (for cache keys)."""

    name: str
    key: str

    def apply(self, sample_id: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class PlantedAttack:
    """A registered artifact (`data.artifacts`), drawn with a random generator seeded by (seed, artifact, sample id)."""

    name: str
    seed: int

    @property
    def key(self) -> str:
        return self.name

    def apply(self, sample_id: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, _stable_hash(self.name), _stable_hash(sample_id)])
        return apply_artifact(self.name, image, rng)


class SplitView(Dataset):
    """Samples of one split: `view[i]` -> (normalised float tensor (3, H, W), label); also raw images and masks."""

    def __init__(
        self,
        *,
        split: str,
        view: str,
        classes: tuple[str, ...],
        sample_ids: tuple[str, ...],
        labels: np.ndarray,
        load_image: Callable[[int], np.ndarray],
        attack: Attack | None,
        has_artifact: np.ndarray,
        normalization: Normalization | None = None,
    ) -> None:
        if view not in VIEWS:
            raise ConfigError(f"unknown view {view!r}; choose one of {VIEWS}")
        if has_artifact.any() and attack is None:
            raise ConfigError("a view with artifact samples needs the attack that draws the artifact")
        self.split = split
        self.view = view
        self.classes = classes
        self.sample_ids = sample_ids
        self.labels = labels
        self.attack = attack
        self.has_artifact = has_artifact
        self.normalization = normalization or Normalization()
        self._load_image = load_image

    @property
    def artifact(self) -> str | None:
        """The name of what the view's artifact samples carry (None: nothing)."""
        return self.attack.name if self.attack else None

    @property
    def attack_key(self) -> str | None:
        """Exactly which attack the artifact samples carry, for cache keys."""
        return self.attack.key if self.attack else None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def image_and_mask(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image (H, W, 3) as the model sees it, and the bool mask (H, W) of its artifact (or all False)."""
        image = self._load_image(index)
        if not self.has_artifact[index]:
            return image, np.zeros(image.shape[:2], dtype=bool)
        return self.attack.apply(self.sample_ids[index], image)

    def image(self, index: int) -> np.ndarray:
        return self.image_and_mask(index)[0]

    def mask(self, index: int) -> np.ndarray:
        return self.image_and_mask(index)[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.ascontiguousarray(self.image(index))).permute(2, 0, 1).float().div_(255)
        return self.normalization.apply(image), int(self.labels[index])

    def head(self, k: int) -> SplitView:
        """The first `k` samples (same indices as in the whole split): what is ready while a split is analysed."""
        clone = copy.copy(self)
        clone.sample_ids, clone.labels, clone.has_artifact = self.sample_ids[:k], self.labels[:k], self.has_artifact[:k]
        return clone

    def with_normalization(self, normalization: Normalization) -> SplitView:
        """The same samples, normalised for another model."""
        clone = copy.copy(self)
        clone.normalization = normalization
        return clone

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}
