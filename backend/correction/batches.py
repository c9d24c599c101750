"""The two batch sources of the correction loop. Both yield the same `Batch` (on the training device) and run the
same forward step, returning the logits and the CAV layer's output that the penalty differentiates:
- `CachedLayerSource`: the CAV layer's cached outputs, run through the part of the model above the layer. Exact when
  the layers below are frozen (they compute the same thing every epoch, and there is no augmentation), and fast.
- `ImageSource`: images through the whole model, with a scoped hook at the CAV layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from backend.correction.methods import Batch, CorrectionMethod
from backend.models import get_layer

__all__ = ["CachedLayerSource", "ImageSource", "LayerTap", "tap_layer"]


class CachedLayerSource:
    """Shuffled batches straight from the cached layer outputs (N, C, H, W; may be memory-mapped)."""

    cached_path = True

    def __init__(
        self,
        acts: np.ndarray,
        labels: np.ndarray,
        has_artifact: np.ndarray,
        upper: nn.Module,
        method: CorrectionMethod,
        *,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.acts, self.labels, self.has_artifact = acts, labels.astype(np.int64), has_artifact
        self.upper, self.method = upper, method
        self.batch_size, self.generator, self.device = batch_size, generator, device

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.labels), generator=self.generator).numpy()
        for start in range(0, len(order), self.batch_size):
            idx = np.sort(order[start : start + self.batch_size])
            yield Batch(
                labels=torch.from_numpy(self.labels[idx]).to(self.device, non_blocking=True),
                has_artifact=torch.from_numpy(self.has_artifact[idx]).to(self.device),
                generator=self.generator,
                layer_out=torch.from_numpy(np.ascontiguousarray(self.acts[idx])).to(self.device, non_blocking=True),
            )

    @contextmanager
    def active(self) -> Iterator[None]:
        yield  # nothing to hook: the layer's output is the input

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        layer_out = batch.layer_out.requires_grad_(self.method.needs_layer_grad)
        return self.upper(self.method.transform(layer_out, batch)), layer_out


class LayerTap:
    """The forward hook at the CAV layer: keeps the layer's output (made differentiable when the method needs its
    gradient) and hands the method's transform of it on to the next layer."""

    def __init__(self, method: CorrectionMethod) -> None:
        self.method = method
        self.batch: Batch | None = None
        self.output: torch.Tensor | None = None

    def __call__(self, _module: nn.Module, _inputs, out: torch.Tensor) -> torch.Tensor:
        if self.method.needs_layer_grad and not out.requires_grad:
            out = out.detach().requires_grad_(True)
        self.output = out
        return self.method.transform(out, self.batch)


@contextmanager
def tap_layer(module: nn.Module, layer: str, method: CorrectionMethod) -> Iterator[LayerTap]:
    """A `LayerTap` on `layer` of `module` for the block; the hook is always removed."""
    tap = LayerTap(method)
    handle = get_layer(module, layer).register_forward_hook(tap)
    try:
        yield tap
    finally:
        handle.remove()


class ImageSource:
    """Shuffled batches of training samples (`augmentation.TrainingSamples`, or several concatenated) through the
    whole model, the CAV layer tapped while `active`."""

    cached_path = False

    def __init__(
        self,
        data: Dataset,
        module: nn.Module,
        layer: str,
        method: CorrectionMethod,
        *,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.loader = DataLoader(
            data,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            pin_memory=device.type == "cuda",
        )
        self.module, self.layer, self.method = module, layer, method
        self.generator, self.device = generator, device
        self._tap: LayerTap | None = None

    def __iter__(self) -> Iterator[Batch]:
        for x, y, flags, masks in self.loader:
            yield Batch(
                labels=y.to(self.device, non_blocking=True),
                has_artifact=flags.to(self.device),
                generator=self.generator,
                images=x.to(self.device, non_blocking=True),
                masks=masks.to(self.device) if self.method.needs_masks else None,
            )

    @contextmanager
    def active(self) -> Iterator[None]:
        with tap_layer(self.module, self.layer, self.method) as self._tap:
            try:
                yield
            finally:
                self._tap = None

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        batch.images.requires_grad_(self.method.needs_input_grad)
        self._tap.batch = batch
        logits = self.module(batch.images)
        return logits, self._tap.output
