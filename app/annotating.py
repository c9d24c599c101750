"""What Explore and Concepts share about annotations: the active concept, writing labels (with feedback and
undo) and the scores of the CAV last fitted for a concept in this session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.context import Context
from app.resources import activations
from backend.annotations import AnnotationStore
from backend.cav import Cav
from backend.errors import ClarcError
from components.sample_grid import LABEL_NAMES

__all__ = [
    "NEW_CONCEPT",
    "active_concept",
    "apply_labels",
    "cav_scores_for",
    "concept_picker",
    "fitted_cav",
    "label_columns",
    "remember_cav",
    "store",
    "undo_last",
]

NEW_CONCEPT = "+ new concept…"


@st.cache_resource(show_spinner=False)
def store() -> AnnotationStore:
    """The workspace's annotation store (one per server; it opens a connection per operation)."""
    return AnnotationStore()


def concept_picker(context: Context) -> str:
    """Choose an existing concept of the dataset or name a new one; returns the active concept's name."""
    names = [c.name for c in store().concepts(context.dataset_id)]
    options = names + [NEW_CONCEPT]
    state = st.session_state
    if state.get("concept") not in options:
        state["concept"] = names[0] if names else NEW_CONCEPT
    left, right = st.columns(2)
    choice = left.selectbox(
        "Concept",
        options,
        key="concept",
        persist_state="session",
        help="the artifact you are annotating, e.g. skin marker, ruler, band-aid; concepts are kept side by side",
    )
    if choice != NEW_CONCEPT:
        return choice
    state.setdefault("new_concept", "skin marker" if not names else "")
    name = right.text_input("Name of the new concept", key="new_concept", persist_state="session").strip()
    return name or "artifact"


def active_concept(context: Context) -> str | None:
    """The concept chosen on Explore or Concepts, if it already has labels."""
    chosen = st.session_state.get("concept")
    names = {c.name for c in store().concepts(context.dataset_id)}
    return chosen if chosen in names else None


def apply_labels(context: Context, concept: str, labels: dict[str, int | None]) -> None:
    """Write labels (None removes one) as one undoable change and say what happened."""
    try:
        batch = store().set_labels(context.dataset_id, concept, labels)
    except ClarcError as exc:
        st.toast(f"Not saved: {exc}", icon=":material/error:")
        return
    values = set(labels.values())
    n = f"{len(labels)} sample{'s' if len(labels) != 1 else ''}"
    if values == {None}:
        what = f"Removed the labels of {n}"
    else:
        what = f"Marked {n} as {' / '.join(sorted(LABEL_NAMES[v] for v in values if v is not None))}"
    if batch:
        st.toast(f"{what} · {concept}", icon=":material/save:")
        st.session_state["concept"] = concept
    else:
        st.toast("Nothing changed: the labels were already stored.", icon=":material/info:")


def undo_last(context: Context) -> None:
    undone = store().undo(context.dataset_id)
    if undone is None:
        st.toast("Nothing to undo.", icon=":material/info:")
    else:
        st.toast(f"Undid the last change: {undone['n']} label(s) of {undone['concept']}", icon=":material/undo:")


def label_columns(context: Context) -> pd.DataFrame:
    """One row per concept of the dataset with its counts."""
    rows = [
        {"concept": c.name, "artifact": c.n_artifact, "clean": c.n_clean} for c in store().concepts(context.dataset_id)
    ]
    return pd.DataFrame(rows, columns=["concept", "artifact", "clean"])


def _fit_key(context: Context, concept: str) -> tuple[str, str, str]:
    return (context.model.sha256, context.dataset_id, concept)


def remember_cav(context: Context, concept: str, cav: Cav) -> None:
    st.session_state.setdefault("cavs", {})[_fit_key(context, concept)] = cav


def fitted_cav(context: Context, concept: str) -> Cav | None:
    """The CAV last fitted for `concept` in this session with this model and dataset."""
    return st.session_state.get("cavs", {}).get(_fit_key(context, concept))


def cav_scores_for(context: Context, concept: str) -> np.ndarray | None:
    """Scores of every training sample along the concept's fitted CAV, or None when none was fitted."""
    cav = fitted_cav(context, concept)
    if cav is None:
        return None
    values = activations(context.model.sha256, context.spec, cav.layer, cav.pooling, context.model)
    return cav.scores(values)
