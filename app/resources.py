"""Everything the pages show that costs time, cached across reruns and pages: models and datasets as resources,
figures as data keyed by the model's content hash. The backend's disk cache sits underneath (activations,
heatmaps), so a restart recomputes nothing either. The functions only call the backend."""

from __future__ import annotations

import numpy as np
import streamlit as st

from backend.activations import cached_activations, candidate_layers
from backend.attribution import class_heatmaps, concept_heatmaps, view_batch
from backend.cav import CavConfig
from backend.cav_quality import divergence
from backend.concepts import ConceptFit, fit_concept
from backend.data import ClarcDataset, open_dataset
from backend.evaluation import clean_and_attacked_accuracy
from backend.inspection import (
    Predictions,
    cached_heatmaps,
    cached_predictions,
    heatmap_features,
    project_embedding,
    split_outlier_scores,
)
from backend.models import LoadedModel, load_checkpoint

EXPLORE_SPLIT = "train"  # annotations, CAVs and corrections all use the training split


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def load_model(path: str, modified: float) -> LoadedModel:
    """The checkpoint at `path`; `modified` (its mtime) makes a rewritten file load anew."""
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Opening the dataset…", max_entries=4)
def load_dataset(spec: str) -> ClarcDataset:
    return open_dataset(spec)


@st.cache_data(show_spinner="Measuring accuracy on the clean and attacked test views…", max_entries=16)
def test_accuracy(model_sha: str, spec: str, _model: LoadedModel) -> dict:
    """Clean and attacked test accuracy of a model (keyed by its content hash) on a dataset."""
    return clean_and_attacked_accuracy(_model, load_dataset(spec))


@st.cache_data(show_spinner=False, max_entries=16)
def layer_choices(model_sha: str, _model: LoadedModel) -> list[str]:
    """Layers with a spatial (C, H, W) output, in forward order: where a CAV can live."""
    return [info.name for info in candidate_layers(_model) if len(info.shape) == 3]


@st.cache_data(show_spinner="Predicting every training image…", max_entries=8)
def predictions(model_sha: str, spec: str, _model: LoadedModel) -> Predictions:
    dataset = load_dataset(spec)
    return cached_predictions(_model, dataset.split(EXPLORE_SPLIT), dataset.dataset_id)


@st.cache_data(show_spinner=False, max_entries=64)
def heatmaps(model_sha: str, spec: str, indices: tuple[int, ...], _model: LoadedModel) -> np.ndarray:
    """LRP heatmaps (N, H, W) of training samples for their predicted class."""
    dataset = load_dataset(spec)
    return cached_heatmaps(_model, dataset.split(EXPLORE_SPLIT), dataset.dataset_id, list(indices))


@st.cache_data(show_spinner="Computing heatmap outlier scores for every training image…", max_entries=8)
def outlier_scores(model_sha: str, spec: str, _model: LoadedModel) -> np.ndarray:
    dataset = load_dataset(spec)
    return split_outlier_scores(_model, dataset.split(EXPLORE_SPLIT), dataset.dataset_id)


@st.cache_data(show_spinner="Collecting activations…", max_entries=16)
def activations(model_sha: str, spec: str, layer: str, pooling: str, _model: LoadedModel) -> np.ndarray:
    """Pooled activations (N, C) of every training sample in `layer`."""
    dataset = load_dataset(spec)
    acts = cached_activations(_model, dataset.split(EXPLORE_SPLIT), dataset.dataset_id, layer, pooling)
    return np.asarray(acts.values)


@st.cache_data(show_spinner="Projecting…", max_entries=16)
def embedding(model_sha: str, spec: str, layer: str, source: str, method: str, _model: LoadedModel) -> np.ndarray:
    """2-D projection of every training sample's activations (`source` "activations") or heatmaps ("heatmaps")."""
    if source == "activations":
        features = activations(model_sha, spec, layer, "max", _model)
    else:
        n = len(load_dataset(spec).split(EXPLORE_SPLIT))
        maps = heatmaps(model_sha, spec, tuple(range(n)), _model)
        features = heatmap_features(maps)
    return project_embedding(features, method)


@st.cache_data(show_spinner="Fitting the CAV and testing it against random directions…", max_entries=32)
def concept_fit(
    model_sha: str,
    spec: str,
    layer: str,
    pooling: str,
    kind: str,
    concept: str,
    labels: tuple[tuple[str, int], ...],
    _model: LoadedModel,
) -> ConceptFit:
    """A CAV fitted on annotations (given as sorted (sample id, label) pairs, so they key the cache)."""
    return fit_concept(
        _model,
        load_dataset(spec),
        dict(labels),
        layer=layer,
        pooling=pooling,
        config=CavConfig(kind=kind),
        concept=concept,
    )


@st.cache_data(show_spinner="Fitting every CAV kind…", max_entries=16)
def kind_divergence(
    model_sha: str,
    spec: str,
    layer: str,
    pooling: str,
    kinds: tuple[str, ...],
    labels: tuple[tuple[str, int], ...],
    _model: LoadedModel,
) -> dict[str, dict[str, float]]:
    """Cosine similarity between the CAVs of several kinds fitted on the same annotations."""
    dataset = load_dataset(spec)
    vectors = {
        kind: fit_concept(
            _model, dataset, dict(labels), layer=layer, pooling=pooling, config=CavConfig(kind=kind), n_random=0
        ).cav.vector
        for kind in kinds
    }
    return divergence(vectors)


@st.cache_data(show_spinner="Localising the concept…", max_entries=32)
def localization(
    model_sha: str, spec: str, layer: str, vector: tuple[float, ...], indices: tuple[int, ...], _model: LoadedModel
) -> np.ndarray:
    """Concept heatmaps (N, H, W) of training samples: where in each image the CAV's concept is."""
    view = load_dataset(spec).split(EXPLORE_SPLIT)
    x, _ = view_batch(view, indices, _model)
    return concept_heatmaps(_model, x, np.array(vector), layer)


@st.cache_data(show_spinner="Explaining before and after…", max_entries=16)
def before_after_heatmaps(
    before_sha: str, after_sha: str, spec: str, indices: tuple[int, ...], _before: LoadedModel, _after: LoadedModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps of the same attacked test images for the model before and after correction, with predictions."""
    view = load_dataset(spec).split("test", "attacked")
    out = []
    for model in (_before, _after):
        x, _ = view_batch(view, indices, model)
        maps = class_heatmaps(model, x)
        out += [maps.maps, maps.targets.numpy()]
    return out[0], out[2], out[1], out[3]
