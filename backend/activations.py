"""Latent activations of a named layer: scoped forward hooks, spatial pooling, and a memory-mapped disk cache.

The cache key is (model content hash, dataset id with its planting, split, view, artifact, layer, pooling, subset),
so a second request for the same activations is a file read, and any change of checkpoint or dataset config misses.
Activations are written batch by batch into a memory-mapped .npy file, so an ISIC-sized dataset never has to fit in
memory at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models.checkpoint import LoadedModel
from backend.models.locking import module_lock
from backend.progress import ProgressCallback, ProgressEvent
from backend.workspace import cache_dir

__all__ = [
    "Pooling",
    "LayerInfo",
    "ActivationSet",
    "candidate_layers",
    "get_layer",
    "capture_layer",
    "collect_activations",
    "cached_activations",
    "model_fingerprint",
]

log = logging.getLogger(__name__)

Pooling = Literal["max", "mean", "none"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
# Module types worth offering as CAV layers: convolutions, their normalisation and activations, blocks, heads.
_LAYER_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.SiLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """A layer a CAV can live in: its module name, module type and per-sample output shape."""

    name: str
    type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ActivationSet:
    """Activations (N, C) pooled or (N, C, H, W) full, in the order of `sample_ids`; `values` may be memory-mapped."""

    values: np.ndarray
    sample_ids: tuple[str, ...]
    labels: np.ndarray
    has_artifact: np.ndarray
    layer: str
    pooling: str


def get_layer(module: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name`; an unknown name is an error that suggests the closest real ones."""
    modules = dict(module.named_modules())
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"the model has no layer {name!r}{hint}")
    return modules[name]


@contextmanager
def capture_layer(module: nn.Module, name: str) -> Iterator[list[torch.Tensor]]:
    """Record the outputs of layer `name` during forward passes inside the block; the hook is always removed."""
    captured: list[torch.Tensor] = []
    with module_lock(module):
        handle = get_layer(module, name).register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            yield captured
        finally:
            handle.remove()


def candidate_layers(model: LoadedModel) -> list[LayerInfo]:
    """Layers with their output shapes, in forward order, from one dry run on a blank image."""
    module = model.module
    shapes: dict[str, tuple[int, ...]] = {}
    names = {m: n for n, m in module.named_modules() if n}
    handles = []
    for sub, name in names.items():
        is_block = len(list(sub.children())) > 0 and "." not in name.split(".")[-1]
        if isinstance(sub, _LAYER_TYPES) or is_block:

            def hook(_m, _i, out, name=name):
                if isinstance(out, torch.Tensor) and name not in shapes:
                    shapes[name] = tuple(out.shape[1:])

            handles.append(sub.register_forward_hook(hook))
    device = next(module.parameters()).device
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, 3, model.meta.input_size, model.meta.input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    modules = dict(module.named_modules())
    return [LayerInfo(n, type(modules[n]).__name__, s) for n, s in shapes.items()]


def _pool(out: torch.Tensor, pooling: str) -> torch.Tensor:
    if out.ndim <= 2 or pooling == "none":
        return out
    flat = out.flatten(2)
    return flat.amax(dim=2) if pooling == "max" else flat.mean(dim=2)


def collect_activations(
    model: LoadedModel,
    view: SplitView,
    layer: str,
    pooling: str = "max",
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    out: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Activations of `layer` for the samples of `view` (or `indices` of it): (N, C) pooled, (N, C, H, W) full.
    Runs where the model is (`device` moves it first); `out` may be a preallocated (memory-mapped) array to write
    into batch by batch."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    module = model.module
    if device is not None:
        module.to(device)
    device = next(module.parameters()).device
    view = view.with_normalization(model.meta.normalization)
    data = view if indices is None else Subset(view, list(indices))
    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    was_training = module.training
    module.eval()
    chunks: list[np.ndarray] = []
    done = 0
    try:
        with capture_layer(module, layer) as captured, torch.no_grad():
            for step, (x, _) in enumerate(loader, start=1):
                module(x.to(device, non_blocking=True))
                acts = _pool(captured.pop(), pooling).float().cpu().numpy()
                captured.clear()
                if out is not None:
                    out[done : done + len(acts)] = acts
                else:
                    chunks.append(acts)
                done += len(acts)
                if on_progress:
                    on_progress(ProgressEvent("activations", step, len(loader), {"samples": done}))
    finally:
        module.train(was_training)
    if out is not None:
        return out
    if not chunks:
        raise ConfigError("no samples to collect activations for")
    return np.concatenate(chunks)


def model_fingerprint(model: LoadedModel) -> str:
    """The checkpoint's content hash, or a hash of the weights for a model that was never saved."""
    if model.sha256:
        return model.sha256
    digest = hashlib.sha256()
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _output_shape(model: LoadedModel, layer: str, pooling: str) -> tuple[int, ...]:
    shape = next((info.shape for info in candidate_layers(model) if info.name == layer), None)
    if shape is None:
        get_layer(model.module, layer)  # raises for unknown names
        raise ConfigError(f"layer {layer!r} produces no tensor output to collect")
    return shape if pooling == "none" or len(shape) == 1 else shape[:1]


def cached_activations(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    pooling: str = "max",
    *,
    indices: Sequence[int] | None = None,
    workspace: str | os.PathLike | None = None,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    on_progress: ProgressCallback | None = None,
) -> ActivationSet:
    """Activations from the disk cache, collecting and storing them first on a miss. The result is memory-mapped."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    chosen = np.arange(len(view)) if indices is None else np.asarray(indices, dtype=np.int64)
    ids = tuple(view.sample_ids[i] for i in chosen)
    key_fields = {
        "model": model_fingerprint(model),
        "dataset": dataset_id,
        "split": view.split,
        "view": view.view,
        "artifact": view.artifact,
        "layer": layer,
        "pooling": pooling,
        "samples": hashlib.sha1("\n".join(ids).encode()).hexdigest(),
    }
    key = hashlib.sha1(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    root = cache_dir("activations", workspace)
    path, meta_path = root / f"{key}.npy", root / f"{key}.json"
    values = _read_cached(path, meta_path, len(ids))
    if values is None:
        shape = (len(ids), *_output_shape(model, layer, pooling))
        tmp = root / f".{key}.{os.getpid()}.tmp.npy"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            collect_activations(
                model,
                view,
                layer,
                pooling,
                indices=None if indices is None else chosen,
                batch_size=batch_size,
                device=device,
                num_workers=num_workers,
                out=out,
                on_progress=on_progress,
            )
            if not np.isfinite(out).all():
                raise ConfigError(f"layer {layer} produced NaN or infinite activations; is the checkpoint broken?")
            out.flush()
            del out
            os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry
        finally:
            tmp.unlink(missing_ok=True)
        meta_path.write_text(json.dumps(key_fields | {"n": len(ids), "shape": list(shape)}))
        values = np.load(path, mmap_mode="r")
    return ActivationSet(
        values=values,
        sample_ids=ids,
        labels=view.labels[chosen],
        has_artifact=view.has_artifact[chosen],
        layer=layer,
        pooling=pooling,
    )


def _read_cached(path: Path, meta_path: Path, n: int) -> np.ndarray | None:
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        values = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable activation cache %s (%s)", path, exc)
        return None
    return values if values.shape[0] == n else None
