"""The session's working set: the model, dataset and layer chosen on Setup (the defaults until then), loaded once
and shared by every page. A page that cannot load them says why and stops."""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from app.resources import layer_choices, load_dataset, load_model
from backend.data import ClarcDataset, check_allowed_spec
from backend.defaults import DEFAULT_CHECKPOINT, DEFAULT_DATASET
from backend.errors import ClarcError
from backend.models import LoadedModel
from backend.storage import check_allowed_path

__all__ = ["Context", "chosen_dataset", "chosen_model", "current_context", "init_choices"]


@dataclass(frozen=True)
class Context:
    model: LoadedModel
    dataset: ClarcDataset
    spec: str
    layer: str
    checkpoint: str  # the model's file, for background jobs that load it in another process

    @property
    def dataset_id(self) -> str:
        return self.dataset.dataset_id


_IN_URL = ("checkpoint", "dataset_spec", "layer")  # Setup's choices, kept in the URL so a reload keeps them


def init_choices() -> None:
    """Take Setup's choices from the URL on a session's first run (a reload), else preselect the shipped default
    model; the dataset and layer follow from the model once it is loaded."""
    state = st.session_state
    for key in _IN_URL:
        if key not in state and key in st.query_params:
            state[key] = st.query_params[key]
    state.setdefault("checkpoint", str(DEFAULT_CHECKPOINT))


def _remember_in_url(defaults: dict[str, str]) -> None:
    """Put the choices that differ from the defaults into the URL (and drop the others)."""
    for key in _IN_URL:
        value = st.session_state.get(key)
        if value is not None and value != defaults[key]:
            st.query_params[key] = value
        elif key in st.query_params:
            del st.query_params[key]


def chosen_model() -> LoadedModel:
    """The checkpoint Setup chose (raises ClarcError, e.g. MissingCardError for a model trained elsewhere)."""
    init_choices()
    path = str(check_allowed_path(st.session_state["checkpoint"], "checkpoint"))
    return load_model(path, os.path.getmtime(path) if os.path.exists(path) else 0.0)


def chosen_dataset(model: LoadedModel) -> ClarcDataset:
    """The dataset Setup chose (default: the one the model was trained on); its classes must be the model's."""
    state = st.session_state
    state.setdefault("dataset_spec", model.meta.dataset or DEFAULT_DATASET)
    check_allowed_spec(state["dataset_spec"])
    dataset = load_dataset(state["dataset_spec"])
    if tuple(dataset.classes) != tuple(model.meta.classes):
        raise ClarcError(
            f"The model predicts {list(model.meta.classes)} but the dataset has classes {list(dataset.classes)}: "
            "choose a dataset of the model's classes (or another model) on Setup."
        )
    return dataset


def current_context() -> Context:
    """Load what Setup chose; on a bad choice show the error with a pointer to Setup and stop the page."""
    state = st.session_state
    try:
        model = chosen_model()
        dataset = chosen_dataset(model)
        layers = layer_choices(model)
        if state.get("layer") not in layers:
            state["layer"] = model.default_layer if model.default_layer in layers else layers[-1]
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    _remember_in_url(
        {"checkpoint": str(DEFAULT_CHECKPOINT), "dataset_spec": model.meta.dataset, "layer": model.default_layer}
    )
    checkpoint = str(check_allowed_path(state["checkpoint"], "checkpoint"))
    return Context(
        model=model, dataset=dataset, spec=state["dataset_spec"], layer=state["layer"], checkpoint=checkpoint
    )
