"""Maps of a whole split for looking at it: PCA or t-SNE of every sample's activations or heatmap features, stored
in the workspace cache, so a page of a large split can show the map an analysis job made."""

from __future__ import annotations

import os

import numpy as np

from backend.attribution import attribution_method, split_heatmap_features
from backend.concepts import cached_activations, project_embedding
from backend.data import SplitView
from backend.errors import ConfigError
from backend.models import LoadedModel, model_fingerprint
from backend.storage import CacheKey, cached_array, stored_array

__all__ = ["EMBEDDINGS", "split_embedding"]

EMBEDDINGS = ("activations/pca", "activations/tsne", "heatmaps/pca", "heatmaps/tsne")  # SOURCE/METHOD
_EMBEDDING_VERSION = 1  # bump when project_embedding's numbers change: stored maps are then recomputed


def split_embedding(
    model: LoadedModel,
    view: SplitView,
    dataset_id: str,
    layer: str,
    source: str,
    method: str,
    *,
    workspace: str | os.PathLike | None = None,
    stored_only: bool = False,
) -> np.ndarray | None:
    """A 2-D map (N_view, 2) of every sample of a split: PCA or t-SNE (`method`) of the layer's max-pooled
    activations or of the heatmaps' features (`source`), stored in the workspace cache. `stored_only` returns None
    instead of computing a missing map: a page of a large split asks that way and leaves the work to a job."""
    if f"{source}/{method}" not in EMBEDDINGS:
        raise ConfigError(f"unknown embedding {source}/{method}; choose from {', '.join(EMBEDDINGS)}")
    fields = {"source": source, "layer": layer if source == "activations" else "", "method": method}
    fields["attribution"] = attribution_method(model)  # of the heatmaps
    key = CacheKey.of_view(
        "embeddings", model_fingerprint(model), dataset_id, view, version=_EMBEDDING_VERSION, **fields
    )
    if stored_only:
        return stored_array(key.path(workspace), (len(view), 2))

    def compute() -> np.ndarray:
        if source == "activations":
            features = np.asarray(cached_activations(model, view, dataset_id, layer, "max", workspace=workspace).values)
        else:
            features = split_heatmap_features(model, view, dataset_id, workspace=workspace)
        return project_embedding(features, method)

    return cached_array(key.path(workspace), compute, (len(view), 2))
