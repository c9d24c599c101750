"""2-D maps of per-sample features (activations or pooled heatmaps) for the dashboard's embedding scatter."""

from __future__ import annotations

from typing import Literal

import numpy as np

from backend.errors import ConfigError

__all__ = ["project_embedding"]


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
