"""Everything the pages show that costs time, cached across reruns and pages: models and datasets as resources,
figures as data keyed by the model's content hash and the dataset's id (through `hash_funcs`, so a function takes
the model itself). The backend's disk cache sits underneath (activations, heatmaps), so a restart recomputes
nothing either. The functions only call the backend. Heatmaps a user waits for are computed under a foreground
lease: the workspace's analysis jobs pause meanwhile."""

from __future__ import annotations

import numpy as np
import streamlit as st

from backend.attribution import (
    cached_heatmaps,
    class_heatmaps,
    concept_heatmaps,
    split_outlier_scores,
    stored_outlier_scores,
)
from backend.concepts import (
    CavConfig,
    CavLibrary,
    ConceptFit,
    cached_activations,
    divergence,
    fit_concept,
)
from backend.data import ClarcDataset, image_batch, open_dataset, view_batch
from backend.discovery import split_embedding
from backend.evaluation import Predictions, cached_predictions, clean_and_attacked_accuracy, predictions_so_far
from backend.models import LoadedModel, load_checkpoint, model_fingerprint
from backend.runs import LocalExecutor, foreground_work, load_examples
from backend.storage import AnnotationStore

EXPLORE_SPLIT = "train"  # CAVs and corrections use the training split; Explore can show and annotate any split


def _with_subclasses(cls: type) -> set[type]:
    return {cls} | {sub for child in cls.__subclasses__() for sub in _with_subclasses(child)}


# A model is known by its content hash, a dataset by its id (spec and planting): equal keys, equal figures. Streamlit
# matches hash_funcs by exact type, so every dataset class is listed.
KEYS = {LoadedModel: model_fingerprint} | {
    cls: (lambda dataset: dataset.dataset_id) for cls in _with_subclasses(ClarcDataset)
}


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def load_model(path: str, modified: float) -> LoadedModel:
    """The checkpoint at `path`; `modified` (its mtime) makes a rewritten file load anew."""
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Opening the dataset…", max_entries=4)
def load_dataset(spec: str) -> ClarcDataset:
    return open_dataset(spec)


@st.cache_resource(show_spinner=False)
def annotation_store() -> AnnotationStore:
    """The workspace's annotation store (one per server; it opens a connection per operation)."""
    return AnnotationStore()


@st.cache_resource(show_spinner=False)
def cav_library() -> CavLibrary:
    """The workspace's saved CAVs."""
    return CavLibrary()


@st.cache_resource(show_spinner=False)
def executor() -> LocalExecutor:
    """The local run executor, made once per server start: making it recovers runs whose worker died."""
    return LocalExecutor()


@st.cache_data(show_spinner="Measuring accuracy on the clean and attacked test views…", max_entries=16, hash_funcs=KEYS)
def test_accuracy(model: LoadedModel, dataset: ClarcDataset) -> dict:
    """Clean and attacked test accuracy of a model on a dataset."""
    return clean_and_attacked_accuracy(model, dataset)


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=KEYS)
def layer_choices(model: LoadedModel) -> list[str]:
    """Layers with a spatial (C, H, W) output, in forward order: where a CAV can live."""
    return [info.name for info in model.layers() if len(info.shape) == 3]


@st.cache_data(show_spinner="Predicting every image of the split…", max_entries=8, hash_funcs=KEYS)
def predictions(model: LoadedModel, dataset: ClarcDataset, split: str = EXPLORE_SPLIT) -> Predictions:
    return cached_predictions(model, dataset.split(split), dataset.dataset_id)


def predictions_ready(model: LoadedModel, dataset: ClarcDataset, split: str = EXPLORE_SPLIT) -> Predictions | None:
    """The predictions of the split's first images that an analysis has made so far (all once it is past them);
    a file read, never a computation, so not cached."""
    return predictions_so_far(model, dataset.split(split), dataset.dataset_id)


def stored_outliers(model: LoadedModel, dataset: ClarcDataset, split: str, predicted: np.ndarray) -> np.ndarray | None:
    """The heatmap outlier scores an analysis job stored for the split (None until it has); a file read."""
    return stored_outlier_scores(model, dataset.split(split), dataset.dataset_id, predicted)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=KEYS)
def heatmaps(
    model: LoadedModel, dataset: ClarcDataset, indices: tuple[int, ...], split: str = EXPLORE_SPLIT
) -> np.ndarray:
    """LRP heatmaps (N, H, W) of samples of a split for their predicted class; analysis jobs pause meanwhile."""
    with foreground_work():
        return cached_heatmaps(model, dataset.split(split), dataset.dataset_id, list(indices))


@st.cache_data(show_spinner="Computing heatmap outlier scores for every image…", max_entries=8, hash_funcs=KEYS)
def outlier_scores(model: LoadedModel, dataset: ClarcDataset, split: str = EXPLORE_SPLIT) -> np.ndarray:
    predicted = predictions(model, dataset, split).predicted
    return split_outlier_scores(model, dataset.split(split), dataset.dataset_id, predicted)


@st.cache_data(show_spinner="Collecting activations…", max_entries=16, hash_funcs=KEYS)
def activations(
    model: LoadedModel, dataset: ClarcDataset, layer: str, pooling: str, split: str = EXPLORE_SPLIT
) -> np.ndarray:
    """Pooled activations (N, C) of every sample of a split in `layer`."""
    acts = cached_activations(model, dataset.split(split), dataset.dataset_id, layer, pooling)
    return np.asarray(acts.values)


@st.cache_data(show_spinner="Projecting…", max_entries=16, hash_funcs=KEYS)
def embedding(
    model: LoadedModel, dataset: ClarcDataset, layer: str, source: str, method: str, split: str = EXPLORE_SPLIT
) -> np.ndarray:
    """2-D map of every sample's activations (`source` "activations") or heatmaps ("heatmaps"), computed here if
    not stored (a small split's)."""
    return split_embedding(model, dataset.split(split), dataset.dataset_id, layer, source, method)


def stored_embedding(
    model: LoadedModel, dataset: ClarcDataset, layer: str, source: str, method: str, split: str = EXPLORE_SPLIT
) -> np.ndarray | None:
    """The 2-D map an analysis job stored for a large split (None until it has); a file read."""
    view = dataset.split(split)
    return split_embedding(model, view, dataset.dataset_id, layer, source, method, stored_only=True)


@st.cache_data(
    show_spinner="Fitting the CAV and testing it against random directions…", max_entries=32, hash_funcs=KEYS
)
def concept_fit(
    model: LoadedModel,
    dataset: ClarcDataset,
    layer: str,
    pooling: str,
    kind: str,
    scope: str,
    attacked_class: str,
    concept: str,
    labels: tuple[tuple[str, int], ...],
) -> ConceptFit:
    """A CAV fitted on annotations (given as sorted (sample id, label) pairs, so they key the cache)."""
    return fit_concept(
        model,
        dataset,
        dict(labels),
        layer=layer,
        pooling=pooling,
        scope=scope,
        attacked_class=attacked_class,
        config=CavConfig(kind=kind),
        concept=concept,
    )


@st.cache_data(show_spinner="Fitting every CAV kind…", max_entries=16, hash_funcs=KEYS)
def kind_divergence(
    model: LoadedModel,
    dataset: ClarcDataset,
    layer: str,
    pooling: str,
    scope: str,
    attacked_class: str,
    kinds: tuple[str, ...],
    labels: tuple[tuple[str, int], ...],
) -> dict[str, dict[str, float]]:
    """Cosine similarity between the CAVs of several kinds fitted on the same annotations."""
    options = dict(layer=layer, pooling=pooling, scope=scope, attacked_class=attacked_class, n_random=0)
    vectors = {
        kind: fit_concept(model, dataset, dict(labels), config=CavConfig(kind=kind), **options).cav.vector
        for kind in kinds
    }
    return divergence(vectors)


@st.cache_data(show_spinner="Localising the concept…", max_entries=32, hash_funcs=KEYS)
def localization(
    model: LoadedModel, dataset: ClarcDataset, layer: str, vector: tuple[float, ...], indices: tuple[int, ...]
) -> np.ndarray:
    """Concept heatmaps (N, H, W) of training samples: where in each image the CAV's concept is."""
    x, _ = view_batch(dataset.split(EXPLORE_SPLIT), indices, model.meta.normalization)
    with foreground_work():
        return concept_heatmaps(model, x, np.array(vector), layer)


@st.cache_data(show_spinner="Explaining before and after…", max_entries=16, hash_funcs=KEYS)
def before_after_heatmaps(
    before: LoadedModel, after: LoadedModel, examples_path: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps and predictions of a run's example test images for the model before and after correction."""
    images = load_examples(examples_path)["images"]
    out = []
    with foreground_work():
        for model in (before, after):
            maps = class_heatmaps(model, image_batch(images, model.meta.normalization))
            out += [maps.maps, maps.targets.numpy()]
    return out[0], out[2], out[1], out[3]
