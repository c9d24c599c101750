"""Models, datasets and derived figures cached across reruns and pages: a page switch recomputes nothing."""

from __future__ import annotations

import streamlit as st

from backend.data import ClarcDataset, open_dataset
from backend.evaluation import clean_and_attacked_accuracy
from backend.models import LoadedModel, load_checkpoint


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
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
