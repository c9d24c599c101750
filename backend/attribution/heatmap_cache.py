"""The heatmap cache: LRP input heatmaps of a view's samples for their predicted class, in one row cache per
(model, attribution method, dataset, split, view, artifact, samples), so each sample's heatmap is computed once;
safe to share between processes (at worst two of them compute a map twice; the first one stored is kept)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from backend.attribution.lrp import attribution_method, class_heatmaps
from backend.data import view_batch
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel, model_fingerprint
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import CacheKey, RowCache

__all__ = ["cached_heatmaps", "heatmap_key"]

log = logging.getLogger(__name__)


def heatmap_key(model: LoadedModel, view: SplitView, dataset_id: str) -> CacheKey:
    """The key of the heatmaps of one model (and its attribution method) on one view of a split."""
    fingerprint = model_fingerprint(model)
    return CacheKey.of_view("heatmaps", fingerprint, dataset_id, view, method=attribution_method(model))


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
    size = model.meta.input_size
    stem = heatmap_key(model, view, dataset_id).path(workspace, suffix="")
    cache = RowCache(stem, (len(view), size, size), np.float32, durable=True)
    found, out = cache.fetch(chosen)
    wanted = np.unique(chosen)
    missing = np.unique(chosen[~found])
    if missing.size:
        log.info("computing %d of %d heatmaps of %s/%s", missing.size, wanted.size, view.split, view.view)
    batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
    for step, batch in enumerate(batches, start=1):
        x, _ = view_batch(view, batch.tolist(), model.meta.normalization)
        maps = class_heatmaps(model, x).maps.astype(np.float32)
        if not np.isfinite(maps).all():
            raise ConfigError("the model produced NaN or infinite heatmaps; is the checkpoint broken?")
        cache.write(batch, maps)
        here = np.isin(chosen, batch)
        out[here] = maps[np.searchsorted(batch, chosen[here])]
        if on_progress:
            done = min(step * batch_size, missing.size)
            on_progress(ProgressEvent("heatmaps", step, len(batches), {"samples": done}))
    return out
