"""Image batches: samples of a view, or uint8 images, as one normalised tensor batch (N, 3, H, W) for a model that
expects `normalization`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from backend.data.views import Normalization, SplitView
from backend.errors import ConfigError

__all__ = ["image_batch", "view_batch"]


def view_batch(
    view: SplitView, indices: Sequence[int], normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `indices` of a view as one batch (N, 3, H, W) normalised with `normalization`, with their labels."""
    view = view.with_normalization(normalization)
    items = [view[i] for i in indices]
    if not items:
        raise ConfigError("no samples selected")
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def image_batch(images: np.ndarray, normalization: Normalization) -> torch.Tensor:
    """uint8 images (N, H, W, 3) as one batch (N, 3, H, W) normalised with `normalization`."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ConfigError(f"need uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    return normalization.apply(x)
