"""The heatmap cache: LRP input heatmaps of a view's samples for their predicted class, in one memory-mapped array
per (model, dataset, split, view, artifact) with a "filled" flag per sample, so each sample's heatmap is computed
once; safe to share between processes (a file lock per cache; at worst two of them compute a map twice)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from backend.attribution.lrp import attribution_method, class_heatmaps, view_batch
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel, model_fingerprint
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import atomic_path, cache_dir, cache_key, digest_lines

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, concurrent writers may then recompute
    fcntl = None

__all__ = ["cached_heatmaps", "heatmap_cache_key"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield  # closing the file releases the lock


def _load(path: Path, shape: tuple[int, ...], dtype: type, mmap_mode: str | None = None) -> np.ndarray | None:
    """The array stored at `path` if it is readable and has this shape and dtype; None if missing or corrupt."""
    try:
        array = np.load(path, mmap_mode=mmap_mode)
    except (OSError, ValueError, EOFError):
        return None
    return array if array.shape == shape and array.dtype == dtype else None


def _store(paths: tuple[Path, Path, Path], shape: tuple[int, ...], idx: np.ndarray, maps: np.ndarray) -> None:
    """Write maps of samples `idx` not yet filled, flush them, then mark them filled; one writer at a time."""
    values_path, filled_path, lock_path = paths
    with _locked(lock_path, exclusive=True):
        values = _load(values_path, shape, np.float32, "r+")
        filled = _load(filled_path, shape[:1], bool)
        if values is None:  # missing or corrupt: clear the flags first, so no crash leaves old flags on new zeros
            if values_path.exists():
                log.warning("rebuilding the unreadable heatmap cache %s", values_path)
            filled = np.zeros(shape[0], dtype=bool)
            with atomic_path(filled_path) as tmp:
                np.save(tmp, filled)
            with atomic_path(values_path) as tmp:
                np.lib.format.open_memmap(tmp, "w+", np.float32, shape).flush()
            values = np.load(values_path, mmap_mode="r+")
        filled = np.zeros(shape[0], dtype=bool) if filled is None else np.array(filled)
        new = ~filled[idx]
        values[idx[new]] = maps[new]
        values.flush()
        del values
        filled[idx[new]] = True
        with atomic_path(filled_path) as tmp:
            np.save(tmp, filled)


def heatmap_cache_key(model: LoadedModel, view: SplitView, dataset_id: str) -> str:
    """The key of the heatmaps of one model (and its attribution method) on one view of a split."""
    return cache_key(
        model=model_fingerprint(model),
        method=attribution_method(model),
        dataset=dataset_id,
        split=view.split,
        view=view.view,
        artifact=view.attack_key,
        samples=digest_lines(view.sample_ids),
    )


def _cache_paths(model: LoadedModel, view: SplitView, dataset_id: str, workspace) -> tuple[Path, Path, Path]:
    """Values, filled flags and lock file of the heatmap cache of one model on one view of a split."""
    key = heatmap_cache_key(model, view, dataset_id)
    root = cache_dir("heatmaps", workspace)
    return root / f"{key}.npy", root / f"{key}.filled.npy", root / f"{key}.lock"


def cached_heatmaps(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    indices: Sequence[int],
    *,
    workspace: str | os.PathLike | None = None,
    batch_size: int = 64,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """LRP input heatmaps (len(indices), H, W) for each sample's predicted class; computed only for samples not yet
    in the disk cache, which is safe to share between processes (at worst they compute a map twice)."""
    chosen = np.asarray(indices, dtype=np.int64).reshape(-1)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(view)):
        raise ConfigError(f"sample indices must lie in 0..{len(view) - 1}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    paths = _cache_paths(model, view, dataset_id, workspace)
    return _cached_heatmaps(model, view, paths, chosen, batch_size, on_progress)


def _cached_heatmaps(model, view, paths, chosen: np.ndarray, batch_size: int, on_progress) -> np.ndarray:
    size = model.meta.input_size
    shape = (len(view), size, size)
    out = np.empty((len(chosen), size, size), dtype=np.float32)
    with _locked(paths[2], exclusive=False):
        values = _load(paths[0], shape, np.float32, "r")
        filled = None if values is None else _load(paths[1], shape[:1], bool)
        filled = np.zeros(len(view), dtype=bool) if filled is None else filled
        out[filled[chosen]] = values[chosen[filled[chosen]]] if filled[chosen].any() else 0
        del values
    wanted = np.unique(chosen)
    missing = wanted[~filled[wanted]]
    if missing.size:
        log.info("computing %d of %d heatmaps of %s/%s", missing.size, wanted.size, view.split, view.view)
    batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
    for step, batch in enumerate(batches, start=1):
        x, _ = view_batch(view, batch.tolist(), model)
        maps = class_heatmaps(model, x).maps.astype(np.float32)
        if not np.isfinite(maps).all():
            raise ConfigError("the model produced NaN or infinite heatmaps; is the checkpoint broken?")
        _store(paths, shape, batch, maps)
        here = np.isin(chosen, batch)
        out[here] = maps[np.searchsorted(batch, chosen[here])]
        if on_progress:
            done = min(step * batch_size, missing.size)
            on_progress(ProgressEvent("heatmaps", step, len(batches), {"samples": done}))
    return out
