"""The activation cache on disk, filled by one forward pass for everything a split needs: the logits and several
layers' activations (max- and mean-pooled, full maps when asked), each written into its own entry as the pass goes.

The cache key is (model content hash, dataset id with its planting, split, view, artifact, layer, pooling, samples),
so a second request for the same activations is a file read, and any change of checkpoint or dataset config misses.
A separate pass per (layer, pooling) decodes and forwards every image again; on a file dataset of 224-pixel images
that is most of the time. Each entry is a row cache filled batch by batch in sample order (so memory stays bounded
by one batch, whatever the split's size, and readers can see how far it got); it is complete when every row is.
The entries' locks, held for the whole pass, keep two processes from collecting the same entry: the second waits
and then reads the first's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from backend.concepts.activations import DEFAULT_POOLING, POOLINGS, ActivationSet, output_shape, pool_activations
from backend.data.views import SplitView
from backend.errors import Cancelled, ConfigError
from backend.models import LoadedModel, capture_layers, eval_mode, model_fingerprint
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import CacheKey, RowCache, digest_lines, file_lock

__all__ = [
    "CacheEntry",
    "PassCancelled",
    "activation_entry",
    "activations_complete",
    "cached_activations",
    "collect_in_one_pass",
    "read_entry",
    "read_partial",
]

log = logging.getLogger(__name__)

Wanted = tuple[str, str]  # (layer, pooling)


class PassCancelled(Cancelled):
    """A single pass stopped because its caller asked it to; nothing half-written is left in the cache."""


@dataclass(frozen=True)
class CacheEntry:
    """Where the activations of one (model, view, layer, pooling, samples) live in the cache: the key and the stem
    of its row cache."""

    key: CacheKey
    stem: Path

    def rows(self, shape: tuple[int, ...] | None = None) -> RowCache:
        """The entry's row cache; a reader leaves out `shape` to take what is stored."""
        return RowCache(self.stem, shape, None if shape is None else np.float32)


def activation_entry(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    pooling: str,
    sample_ids: Sequence[str],
    workspace: str | os.PathLike | None = None,
) -> CacheEntry:
    """The cache entry of `layer`'s activations (`pooling`) of these samples of a view."""
    samples = digest_lines(sample_ids)
    key = CacheKey.of_view(
        "activations", model_fingerprint(model), dataset_id, view, samples=samples, layer=layer, pooling=pooling
    )
    return CacheEntry(key, key.path(workspace, suffix=""))


def activations_complete(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    pooling: str,
    workspace: str | os.PathLike | None = None,
) -> bool:
    """Whether the whole view's activations of (layer, pooling) are in the cache, readable: a file check a page
    makes before asking for them, so it never collects a large split itself."""
    entry = activation_entry(model, view, dataset_id, layer, pooling, view.sample_ids, workspace)
    return read_entry(entry, len(view)) is not None


def read_entry(entry: CacheEntry, n: int) -> np.ndarray | None:
    """The complete cached values of an entry (memory-mapped), or None if they are missing, incomplete or
    unreadable."""
    values = entry.rows().complete()
    return values if values is not None and len(values) == n else None


def cached_activations(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    pooling: str = DEFAULT_POOLING,
    **options,
) -> ActivationSet:
    """Activations from the disk cache, collecting and storing them first on a miss. The result is memory-mapped.
    `options` are those of `collect_in_one_pass` (indices, workspace, device, ...), with batches of 128 by default."""
    found = collect_in_one_pass(model, view, dataset_id, [(layer, pooling)], **{"batch_size": 128} | options)
    return found[(layer, pooling)]


def read_partial(entry: CacheEntry) -> np.ndarray | None:
    """The rows written so far of an entry a pass is collecting (or all of a complete one); None if it does not
    exist. Rows appear in sample order, so the first k samples are ready when k rows are."""
    return entry.rows().prefix()


def collect_in_one_pass(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    wanted: Sequence[Wanted],
    *,
    indices: Sequence[int] | None = None,
    workspace: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict[Wanted, ActivationSet]:
    """The activations of every (layer, pooling) in `wanted` for the samples of `view` (or `indices` of it), from
    the cache where they are there and from one shared forward pass where not; memory-mapped results.
    `cancel` (set by another thread) stops the pass between batches with PassCancelled."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    for _, pooling in wanted:
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    wanted = list(dict.fromkeys(wanted))
    chosen = np.arange(len(view)) if indices is None else np.asarray(indices, dtype=np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(view)):
        raise ConfigError(f"sample indices must lie in 0..{len(view) - 1}")
    ids = tuple(view.sample_ids[i] for i in chosen)
    entries = {w: activation_entry(model, view, dataset_id, *w, ids, workspace) for w in wanted}
    shapes = {w: (len(ids), *output_shape(model, *w)) for w in wanted}  # raises for unknown layers
    missing = [w for w in wanted if read_entry(entries[w], len(ids)) is None]
    if missing:
        if not len(ids):
            raise ConfigError("no samples to collect activations for")
        caches = {w: entries[w].rows(shapes[w]) for w in missing}
        with file_lock(cache.lock_path for cache in caches.values()):
            missing = [w for w in missing if read_entry(entries[w], len(ids)) is None]  # another process's work
            if missing:
                caches = {w: caches[w] for w in missing}
                _one_pass(model, view, chosen, caches, batch_size, device, num_workers, on_progress, cancel)
    return {
        w: ActivationSet(
            values=read_entry(entries[w], len(ids)),
            sample_ids=ids,
            labels=view.labels[chosen],
            has_artifact=view.has_artifact[chosen],
            layer=w[0],
            pooling=w[1],
        )
        for w in wanted
    }


def _one_pass(
    model, view, chosen, caches: dict[Wanted, RowCache], batch_size, device, num_workers, on_progress, cancel
) -> None:
    """Forward every chosen sample once, writing each entry's rows batch by batch (the caller holds the entries'
    locks); an entry left incomplete by an earlier pass starts afresh, one this pass leaves incomplete is removed."""
    module = model.module
    if device is not None:
        module.to(device)
    device = next(module.parameters()).device
    data = Subset(view.with_normalization(model.meta.normalization), chosen.tolist())
    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    layers = sorted({layer for layer, _ in caches})
    for cache in caches.values():
        cache.remove(held=True)
    completed = False
    try:
        done = 0
        with eval_mode(module), capture_layers(module, layers) as captured, torch.no_grad():
            for step, (x, _) in enumerate(loader, start=1):
                if cancel is not None and cancel.is_set():
                    raise PassCancelled(f"cancelled after {done} of {len(chosen)} images")
                module(x.to(device, non_blocking=True))
                outputs = {layer: captured[layer].pop() for layer in layers}
                for outs in captured.values():
                    outs.clear()
                rows = np.arange(done, done + len(x))
                for (layer, pooling), cache in caches.items():
                    acts = pool_activations(outputs[layer], pooling).float().cpu().numpy()
                    if not np.isfinite(acts).all():
                        raise ConfigError(
                            f"layer {layer} produced NaN or infinite activations; is the checkpoint broken?"
                        )
                    cache.write(rows, acts, held=True)  # readers see whole batches
                done += len(x)
                if on_progress:
                    on_progress(ProgressEvent("activations", step, len(loader), {"samples": done}))
        completed = True
    finally:
        if not completed:
            for cache in caches.values():
                cache.remove(held=True)
