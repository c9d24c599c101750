"""The activation cache on disk, filled by one forward pass for everything a split needs: the logits and several
layers' activations (max- and mean-pooled, full maps when asked), each written into its own entry as the pass goes.

The cache key is (model content hash, dataset id with its planting, split, view, artifact, layer, pooling, samples),
so a second request for the same activations is a file read, and any change of checkpoint or dataset config misses.
A separate pass per (layer, pooling) decodes and forwards every image again; on a file dataset of 224-pixel images
that is most of the time. Each entry is written sequentially to `<key>.partial.npy` (so memory stays bounded by one
batch, whatever the split's size, and readers can see how far it got) and renamed into place when complete. A file
lock per entry keeps two processes from collecting the same entry: the second waits and then reads the first's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from backend.concepts.activations import DEFAULT_POOLING, POOLINGS, ActivationSet, output_shape, pool_activations
from backend.data.views import SplitView
from backend.errors import Cancelled, ConfigError
from backend.models import LoadedModel, capture_layers, eval_mode, model_fingerprint
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import cache_dir, cache_key, digest_lines

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: two processes may then collect the same entry twice
    fcntl = None

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
    """Where the activations of one (model, view, layer, pooling, samples) live in the cache: the .npy values, the
    .json that marks them complete, and the fields of the key (written into the .json)."""

    path: Path
    meta_path: Path
    fields: dict

    @property
    def partial_path(self) -> Path:
        """Where a single pass writes the values while it runs (readable rows grow as it goes)."""
        return self.path.with_suffix(".partial.npy")

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")


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
    key_fields = {
        "model": model_fingerprint(model),
        "dataset": dataset_id,
        "split": view.split,
        "view": view.view,
        "artifact": view.attack_key,
        "layer": layer,
        "pooling": pooling,
        "samples": digest_lines(sample_ids),
    }
    root = cache_dir("activations", workspace)
    key = cache_key(**key_fields)
    return CacheEntry(root / f"{key}.npy", root / f"{key}.json", key_fields)


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
    """The complete cached values of an entry (memory-mapped), or None if they are missing or unreadable."""
    return _read_cached(entry.path, entry.meta_path, n)


def _read_cached(path: Path, meta_path: Path, n: int) -> np.ndarray | None:
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        values = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable activation cache %s (%s)", path, exc)
        return None
    return values if values.shape[0] == n else None


def cached_activations(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    pooling: str = DEFAULT_POOLING,
    *,
    indices: Sequence[int] | None = None,
    workspace: str | os.PathLike | None = None,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    on_progress: ProgressCallback | None = None,
) -> ActivationSet:
    """Activations from the disk cache, collecting and storing them first on a miss. The result is memory-mapped."""
    found = collect_in_one_pass(
        model,
        view,
        dataset_id,
        [(layer, pooling)],
        indices=indices,
        workspace=workspace,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        on_progress=on_progress,
    )
    return found[(layer, pooling)]


@contextlib.contextmanager
def _locked(paths: list[Path]) -> Iterator[None]:
    """Exclusive file locks on `paths`, taken in sorted order (so two passes never deadlock)."""
    with contextlib.ExitStack() as stack:
        for path in sorted(paths):
            handle = stack.enter_context(open(path, "a+b"))
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _open_writer(path: Path, shape: tuple[int, ...]) -> BinaryIO:
    """A .npy file of float32 `shape` whose header is written and whose rows follow as they are appended."""
    handle = open(path, "wb")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    return handle


def read_partial(entry: CacheEntry) -> np.ndarray | None:
    """The rows written so far of an entry a pass is collecting (or all of a complete one); None if neither
    exists. Rows appear in sample order, so the first k samples are ready when k rows are."""
    for path in (entry.path, entry.partial_path):
        try:
            with open(path, "rb") as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(handle)
                row = int(np.prod(shape[1:])) * dtype.itemsize
                data = handle.read()
        except (OSError, ValueError):
            continue
        rows = min(shape[0], len(data) // row) if row else 0
        return np.frombuffer(data[: rows * row], dtype=dtype).reshape(rows, *shape[1:])
    return None


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
        with _locked([entries[w].lock_path for w in missing]):
            missing = [w for w in missing if read_entry(entries[w], len(ids)) is None]  # another process's work
            if missing:
                _one_pass(
                    model,
                    view,
                    chosen,
                    {w: entries[w] for w in missing},
                    shapes,
                    batch_size,
                    device,
                    num_workers,
                    on_progress,
                    cancel,
                )
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
    model, view, chosen, entries: dict[Wanted, CacheEntry], shapes, batch_size, device, num_workers, on_progress, cancel
) -> None:
    """Forward every chosen sample once, appending each entry's rows to its partial file; rename them into place
    (with their .json) only when the pass completes."""
    module = model.module
    if device is not None:
        module.to(device)
    device = next(module.parameters()).device
    data = Subset(view.with_normalization(model.meta.normalization), chosen.tolist())
    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    layers = sorted({layer for layer, _ in entries})
    writers = {w: _open_writer(e.partial_path, shapes[w]) for w, e in entries.items()}
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
                for (layer, pooling), handle in writers.items():
                    acts = pool_activations(outputs[layer], pooling).float().cpu().numpy()
                    if not np.isfinite(acts).all():
                        raise ConfigError(
                            f"layer {layer} produced NaN or infinite activations; is the checkpoint broken?"
                        )
                    handle.write(np.ascontiguousarray(acts).tobytes())
                    handle.flush()  # readers of the partial file see whole batches
                done += len(x)
                if on_progress:
                    on_progress(ProgressEvent("activations", step, len(loader), {"samples": done}))
        for handle in writers.values():
            handle.close()
        for w, entry in entries.items():
            os.replace(entry.partial_path, entry.path)
            entry.meta_path.write_text(json.dumps(entry.fields | {"n": len(chosen), "shape": list(shapes[w])}))
        completed = True
    finally:
        for handle in writers.values():
            handle.close()
        if not completed:
            for entry in entries.values():
                entry.partial_path.unlink(missing_ok=True)
