"""2-D maps of per-sample features (activations or pooled heatmaps) for the dashboard's embedding scatter.

t-SNE scales to an ISIC-sized split by subsampling: beyond `TSNE_MAX_POINTS` samples it maps a fixed random subset
(in the features' first 50 principal components) and places every other sample at the distance-weighted mean of its
10 nearest mapped neighbours, so 20,000 points take about as long as 3,000 (and PCA is exact at any size).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from backend.errors import ConfigError

__all__ = ["TSNE_MAX_POINTS", "project_embedding"]

TSNE_MAX_POINTS = 3000
_NEIGHBOURS = 10


def project_embedding(features: np.ndarray, method: Literal["pca", "tsne"] = "pca", *, seed: int = 0) -> np.ndarray:
    """A 2-D map (N, 2) of features (N, ...) for a scatter plot: PCA or t-SNE of the standardised features."""
    from sklearn.decomposition import PCA

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
    if len(x) <= TSNE_MAX_POINTS:
        return _tsne(x, seed)
    reduced = PCA(n_components=min(50, x.shape[1]), random_state=seed).fit_transform(x)
    return _tsne_subsampled(reduced, seed)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed).fit_transform(x)


def _tsne_subsampled(x: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE of `TSNE_MAX_POINTS` samples of `x` chosen at random (seeded); the others placed among their nearest
    mapped neighbours (inverse-distance weights: a duplicate lands on its twin)."""
    from sklearn.neighbors import NearestNeighbors

    anchors = np.sort(np.random.default_rng(seed).choice(len(x), TSNE_MAX_POINTS, replace=False))
    rest = np.setdiff1d(np.arange(len(x)), anchors)
    points = np.empty((len(x), 2))
    points[anchors] = _tsne(x[anchors], seed)
    distances, nearest = NearestNeighbors(n_neighbors=_NEIGHBOURS).fit(x[anchors]).kneighbors(x[rest])
    weights = 1.0 / (distances + 1e-9)
    points[rest] = (points[anchors][nearest] * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
    return points
