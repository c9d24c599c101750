"""What the "Explore" page shows of a split: cached predictions, cached LRP heatmaps, heatmap outlier scores,
2-D embeddings of features and ROC curves. Heatmaps live in one memory-mapped array per (model, dataset, split,
view, artifact) with a "filled" flag per sample, so browsing computes each sample's heatmap once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from backend.activations import cached_activations, candidate_layers, model_fingerprint
from backend.attribution import attribution_method, class_heatmaps, view_batch
from backend.data.views import SplitView
from backend.errors import ConfigError
from backend.models.checkpoint import LoadedModel
from backend.progress import ProgressCallback, ProgressEvent
from backend.workspace import cache_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, concurrent writers may then recompute
    fcntl = None

__all__ = [
    "Predictions",
    "output_layer",
    "cached_predictions",
    "cached_heatmaps",
    "heatmap_features",
    "heatmap_outlier_scores",
    "split_outlier_scores",
    "project_embedding",
    "roc_points",
]

log = logging.getLogger(__name__)
_CHUNK = 256  # samples per cached_heatmaps call in split_outlier_scores: bounds memory and paces progress


@dataclass(frozen=True)
class Predictions:
    """The model's softmax output (N, K) on every sample of a view, with the true labels (N,)."""

    sample_ids: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def output_layer(model: LoadedModel) -> str:
    """Name of the module that produces the logits: the last layer whose output is one value per class."""
    n_classes = len(model.meta.classes)
    for info in reversed(candidate_layers(model)):
        if info.shape == (n_classes,):
            return info.name
    raise ConfigError(f"no layer of this {model.meta.arch} outputs {n_classes} class logits")


def cached_predictions(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> Predictions:
    """Softmax predictions of every sample, from logits disk-cached like any other activations."""
    logits = cached_activations(
        model, view, dataset_id, output_layer(model), "none", workspace=workspace, on_progress=on_progress
    )
    z = np.asarray(logits.values, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return Predictions(sample_ids=logits.sample_ids, labels=np.asarray(logits.labels, dtype=np.int64), probs=probs)


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


def _save_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npy")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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
            _save_atomic(filled_path, lambda tmp: np.save(tmp, filled))
            _save_atomic(values_path, lambda tmp: np.lib.format.open_memmap(tmp, "w+", np.float32, shape).flush())
            values = np.load(values_path, mmap_mode="r+")
        filled = np.zeros(shape[0], dtype=bool) if filled is None else np.array(filled)
        new = ~filled[idx]
        values[idx[new]] = maps[new]
        values.flush()
        del values
        filled[idx[new]] = True
        _save_atomic(filled_path, lambda tmp: np.save(tmp, filled))


def _cache_paths(model: LoadedModel, view: SplitView, dataset_id: str, workspace) -> tuple[Path, Path, Path]:
    """Values, filled flags and lock file of the heatmap cache of one model on one view of a split."""
    ids = hashlib.sha1("\n".join(view.sample_ids).encode()).hexdigest()
    fields = [model_fingerprint(model), attribution_method(model), dataset_id, view.split, view.view, view.artifact]
    key = hashlib.sha1(json.dumps([*fields, ids]).encode()).hexdigest()[:20]
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


def split_outlier_scores(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    *,
    workspace: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Outlier scores (N_view,) of every sample's heatmap among the samples of the same predicted class."""
    predicted = cached_predictions(model, view, dataset_id, workspace=workspace, on_progress=on_progress).predicted
    paths = _cache_paths(model, view, dataset_id, workspace)
    starts = range(0, len(view), _CHUNK)
    unit = []
    for step, start in enumerate(starts, start=1):
        chunk = np.arange(start, min(start + _CHUNK, len(view)))
        unit.append(heatmap_features(_cached_heatmaps(model, view, paths, chunk, 64, None), 16))
        if on_progress:
            on_progress(ProgressEvent("heatmaps", step, len(starts), {"samples": int(chunk[-1]) + 1}))
    return _group_scores(np.concatenate(unit), predicted) if unit else np.zeros(0)


def project_embedding(features: np.ndarray, method: Literal["pca", "tsne"] = "pca", *, seed: int = 0) -> np.ndarray:
    """A 2-D map (N, 2) of features (N, ...) for a scatter plot: PCA or t-SNE of the standardised features."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in ("pca", "tsne"):
        raise ConfigError(f"unknown embedding method {method!r}; choose 'pca' or 'tsne'")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim < 2 or len(x) < 3:
        raise ConfigError(f"an embedding needs features (N, D) of at least 3 samples, got shape {x.shape}")
    x = x.reshape(len(x), -1)
    if not np.isfinite(x).all():
        raise ConfigError("features contain NaN or infinite values")
    std = x.std(axis=0)
    x = np.divide(x - x.mean(axis=0), std, out=np.zeros_like(x), where=std > 0)
    if not x.any():
        return np.zeros((len(x), 2))  # all features constant: every sample at the origin
    if x.shape[1] < 2:
        x = np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    return TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed).fit_transform(x)


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of the ROC curve of scores (N,) against binary labels (N,), 1 positive."""
    from sklearn.metrics import roc_curve

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ConfigError(f"need one score per label: scores {scores.shape}, labels {labels.shape}")
    if not np.isin(labels, [0, 1]).all() or len(np.unique(labels)) != 2:
        raise ConfigError("a ROC curve needs binary labels (0/1) with both classes present")
    if not np.isfinite(scores).all():
        raise ConfigError("scores contain NaN or infinite values")
    fpr, tpr, _ = roc_curve(labels.astype(int), scores)
    return fpr, tpr
