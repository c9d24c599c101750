"""Heatmap outlier scores: how atypical a sample's explanation is among the samples of its predicted class.
Shortcuts often show up as odd explanations: a heatmap on a ruler at the border where the class's typical heatmap
sits on the lesion."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.attribution.heatmap_cache import cached_heatmaps, heatmap_key
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel
from backend.progress import ProgressCallback, ProgressEvent
from backend.storage import cached_array, digest_lines, stored_array

__all__ = [
    "cached_outlier_scores",
    "heatmap_features",
    "heatmap_outlier_scores",
    "split_heatmap_features",
    "split_outlier_scores",
    "stored_outlier_scores",
]

_CHUNK = 256  # samples per cached_heatmaps call in split_heatmap_features: bounds memory and paces progress
_FEATURE_SIZE = 16  # heatmaps pooled to 16 x 16 for outlier scores and embeddings


def heatmap_features(heatmaps: np.ndarray, size: int = 16) -> np.ndarray:
    """Maps (N, H, W) average-pooled to (N, size * size), each scaled to unit L1 norm (all-zero maps stay zero):
    comparable across images whatever their logit, for outlier scores and embeddings."""
    with torch.no_grad():
        pooled = F.adaptive_avg_pool2d(torch.from_numpy(np.asarray(heatmaps, dtype=np.float64))[:, None], size)
    flat = pooled.flatten(1).numpy()
    norms = np.abs(flat).sum(axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def _group_scores(unit: np.ndarray, groups: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(unit))
    _, inverse = np.unique(groups, return_inverse=True)
    for g in range(inverse.max() + 1 if len(inverse) else 0):
        members = inverse == g
        dist = np.linalg.norm(unit[members] - unit[members].mean(axis=0), axis=1)
        scale = np.median(dist) or dist.mean()  # more than half identical: fall back to the mean distance
        scores[members] = dist / scale if scale > 0 else 0.0
    return scores


def heatmap_outlier_scores(heatmaps: np.ndarray, groups: np.ndarray, *, size: int = 16) -> np.ndarray:
    """How atypical each heatmap (N, H, W) is within its group (N,): L2 distance of its pooled, L1-normalised map
    to the group's mean map over the group's median distance (~1 typical, higher atypical, lone samples 0)."""
    heatmaps, groups = np.asarray(heatmaps), np.asarray(groups)
    if heatmaps.ndim != 3:
        raise ConfigError(f"heatmaps must be (N, H, W), got shape {heatmaps.shape}")
    if groups.shape != heatmaps.shape[:1]:
        raise ConfigError(f"need one group per heatmap: {len(heatmaps)} heatmaps, groups of shape {groups.shape}")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"size must be a positive integer, got {size!r}")
    if not np.isfinite(heatmaps).all():
        raise ConfigError("heatmaps contain NaN or infinite values")
    return _group_scores(heatmap_features(heatmaps, size), groups)


def split_heatmap_features(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """`heatmap_features` (N_view, 256) of every sample's heatmap, from the heatmap cache (filled where needed),
    chunk by chunk so no split's heatmaps are in memory at once; stored beside the outlier scores, so the next
    request (the heatmap embedding) is a file read."""
    path = heatmap_key(model, view, dataset_id).derive("outliers", features=_FEATURE_SIZE).path(workspace)
    compute = partial(_features, model, view, dataset_id, workspace, on_progress)
    return cached_array(path, compute, (len(view), _FEATURE_SIZE**2))


def _features(model, view, dataset_id, workspace, on_progress) -> np.ndarray:
    """The features of every heatmap of the view, `_CHUNK` heatmaps at a time (their progress reported)."""
    starts = range(0, len(view), _CHUNK)
    parts = []
    for step, start in enumerate(starts, start=1):
        chunk = np.arange(start, min(start + _CHUNK, len(view)))
        maps = cached_heatmaps(model, view, dataset_id, chunk, workspace=workspace)
        parts.append(heatmap_features(maps, _FEATURE_SIZE))
        if on_progress:
            on_progress(ProgressEvent("heatmaps", step, len(starts), {"samples": int(chunk[-1]) + 1}))
    return np.concatenate(parts) if parts else np.zeros((0, _FEATURE_SIZE**2))


def split_outlier_scores(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    predicted: np.ndarray,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Outlier scores (N_view,) of every sample's heatmap among the samples of the same `predicted` class (N_view,),
    from `split_heatmap_features`."""
    predicted = np.asarray(predicted)
    if predicted.shape != (len(view),):
        raise ConfigError(f"need one predicted class per sample: {len(view)} samples, got shape {predicted.shape}")
    features = split_heatmap_features(model, view, dataset_id, workspace=workspace, on_progress=on_progress)
    return _group_scores(features, predicted) if len(features) else np.zeros(0)


def _scores_path(model: LoadedModel, view: SplitView, dataset_id: str, predicted: np.ndarray, workspace) -> Path:
    predicted_digest = digest_lines(str(int(k)) for k in predicted)
    return heatmap_key(model, view, dataset_id).derive("outliers", predicted=predicted_digest).path(workspace)


def stored_outlier_scores(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    predicted: np.ndarray,
    *,
    workspace: str | os.PathLike | None = None,
) -> np.ndarray | None:
    """The outlier scores `cached_outlier_scores` stored for this model, view and predictions; None if not there
    (a page asks this, so it never computes them itself)."""
    return stored_array(_scores_path(model, view, dataset_id, np.asarray(predicted), workspace), (len(view),))


def cached_outlier_scores(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    predicted: np.ndarray,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """`split_outlier_scores`, stored on disk (a few bytes per sample) so that the next request is a file read."""
    predicted = np.asarray(predicted)
    path = _scores_path(model, view, dataset_id, predicted, workspace)
    compute = partial(
        split_outlier_scores, model, view, dataset_id, predicted, workspace=workspace, on_progress=on_progress
    )
    return cached_array(path, compute, (len(view),))
