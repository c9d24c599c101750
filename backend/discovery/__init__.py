"""Discovery: find shortcuts before anyone annotated them. Latent relevances per class (CRP-style), spectral
clustering of them (SpRAy), a concept atlas of the most relevant channels, candidates ranked for review, and
maps of a whole split (PCA, t-SNE) to look at it."""

from backend.discovery.candidates import (
    AtlasChannel,
    Candidate,
    ClassDiscovery,
    RevealConfig,
    discover_class,
    reveal,
)
from backend.discovery.embedding import EMBEDDINGS, split_embedding
from backend.discovery.relevance import DiscoveryCancelled, LatentRelevances, latent_relevances
from backend.discovery.spray import SpectralClusters, normalised_relevance, spectral_clusters, whitened

__all__ = [
    "EMBEDDINGS",
    "split_embedding",
    "AtlasChannel",
    "Candidate",
    "ClassDiscovery",
    "DiscoveryCancelled",
    "LatentRelevances",
    "RevealConfig",
    "SpectralClusters",
    "discover_class",
    "latent_relevances",
    "normalised_relevance",
    "reveal",
    "spectral_clusters",
    "whitened",
]
