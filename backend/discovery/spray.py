"""Spectral relevance analysis (SpRAy, Lapuschkin et al. 2019): spectral clustering of explanations. Samples a model
classifies for the same reason have similar relevance vectors; a shortcut shows up as its own cluster, away from the
class's main mode. The number of clusters is where the graph Laplacian's eigengap is largest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import ConfigError

__all__ = ["SpectralClusters", "normalised_relevance", "spectral_clusters", "whitened"]


@dataclass(frozen=True)
class SpectralClusters:
    """Cluster labels (N,), the Laplacian's smallest eigenvalues (max_clusters + 1,), the chosen number of clusters,
    its eigengap, and a 2-D spectral embedding (N, 2) to draw the samples in."""

    labels: np.ndarray
    eigenvalues: np.ndarray
    n_clusters: int
    eigengap: float
    embedding: np.ndarray


def normalised_relevance(relevance: np.ndarray) -> np.ndarray:
    """Relevance vectors (N, D) scaled to unit L1 norm: the share each channel has in a sample's explanation, so
    confident and hesitant samples compare by their reasons, not by their logits."""
    relevance = np.asarray(relevance, dtype=np.float64)
    norms = np.abs(relevance).sum(axis=1, keepdims=True)
    return np.divide(relevance, norms, out=np.zeros_like(relevance), where=norms > 0)


def whitened(features: np.ndarray, variance: float = 0.98) -> np.ndarray:
    """The principal components of `features` (N, D) that hold `variance` of their total variance, each scaled to
    unit variance. A class's relevances vary most along its main reasons (how much lesion, how confident); a shortcut
    often lives in a direction of small variance, which a Euclidean neighbour graph would drown out. Dropping the
    last components keeps whitening from blowing up noise."""
    features = np.asarray(features, dtype=np.float64)
    centred = features - features.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    power = s**2
    if power.sum() <= 0:
        return centred
    k = int(np.searchsorted(np.cumsum(power) / power.sum(), variance) + 1)
    kept = power[:k] > power[0] * 1e-12  # components of no variance stay out: they would be scaled from zero
    return u[:, :k][:, kept] * np.sqrt(len(features))


def spectral_clusters(
    features: np.ndarray, *, max_clusters: int = 8, n_neighbors: int = 10, seed: int = 0
) -> SpectralClusters:
    """Cluster the rows of `features` (N, D) on their symmetric k-nearest-neighbour graph: the eigenvectors of the
    normalised Laplacian's smallest eigenvalues, k chosen by the largest eigengap in 2..max_clusters, then k-means
    on the row-normalised eigenvectors (Ng, Jordan and Weiss)."""
    # scipy.sparse and scikit-learn load here, not with the package: every worker process imports discovery, and
    # they cost it over a second that a correction run never needs
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh
    from sklearn.cluster import KMeans
    from sklearn.neighbors import kneighbors_graph

    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if features.ndim != 2 or n < 4:
        raise ConfigError(
            f"spectral clustering needs at least 4 samples as rows of a matrix, got shape {features.shape}"
        )
    if not np.isfinite(features).all():
        raise ConfigError("relevances contain NaN or infinite values")
    max_clusters = max(2, min(max_clusters, n - 2))
    graph = kneighbors_graph(features, min(n_neighbors, n - 1), mode="connectivity", include_self=False)
    graph = ((graph + graph.T) > 0).astype(np.float64)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    affinity = scale @ graph @ scale  # eigenvalues mu = 1 - lambda of the normalised Laplacian
    k = max_clusters + 1
    if n <= 400:
        mu, vectors = np.linalg.eigh(affinity.toarray())
        mu, vectors = mu[::-1][:k], vectors[:, ::-1][:, :k]
    else:
        mu, vectors = eigsh(affinity, k=k, which="LA", v0=np.full(n, 1 / np.sqrt(n)))
        order = np.argsort(mu)[::-1]
        mu, vectors = mu[order], vectors[:, order]
    eigenvalues = np.clip(1.0 - mu, 0.0, 2.0)
    gaps = np.diff(eigenvalues)  # gaps[i] = lambda_{i+1} - lambda_i: after i + 1 clusters
    n_clusters = int(np.argmax(gaps[1:max_clusters]) + 2)
    spectral = vectors[:, :n_clusters]
    rows = spectral / np.maximum(np.linalg.norm(spectral, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(rows)
    embedding = vectors[:, 1:3] / np.sqrt(np.maximum(degree, 1e-12))[:, None]  # D^-1/2 v: the random walk's coordinates
    return SpectralClusters(labels, eigenvalues, n_clusters, float(gaps[n_clusters - 1]), embedding)
