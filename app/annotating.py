"""What Explore and Concepts share about annotations: the active concept, writing labels (with feedback and
undo) and the scores of the concept's CAV (fitted in this session, else saved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.context import Context
from app.resources import EXPLORE_SPLIT, activations, annotation_store, cav_library
from backend.concepts import Cav
from backend.errors import ClarcError
from components.sample_grid import LABEL_NAMES

__all__ = [
    "NEW_CONCEPT",
    "ACTIVE",
    "apply_labels",
    "cav_scores_for",
    "concept_manager",
    "concept_picker",
    "fitted_cav",
    "label_columns",
    "remember_cav",
    "undo_last",
]

NEW_CONCEPT = "+ new concept…"
ACTIVE = "active_concept"  # the concept being annotated, shared by the pages
REVIEW = "explore_review"  # images another page sends to Explore's checklist: {"concept", "title", "sample_ids"}


def concept_picker(context: Context) -> str:
    """Choose an existing concept of the dataset or name a new one; returns the active concept's name. The choice
    lives under a plain session key (`ACTIVE`), so pages and label writes can change it; the widgets mirror it."""
    state = st.session_state
    names = [c.name for c in annotation_store().concepts(context.dataset_id)]
    active = state.get(ACTIVE)
    if active is None:  # nothing chosen yet: the first concept, or a new one with a suggested name
        active = names[0] if names else "skin marker"
    state["concept"] = active if active in names else NEW_CONCEPT
    left, right = st.columns(2)
    left.selectbox(
        "Concept",
        names + [NEW_CONCEPT],
        key="concept",
        on_change=_choose,
        help="the artifact you are annotating, e.g. skin marker, ruler, band-aid; concepts are kept side by side",
    )
    if active in names:
        return active
    state["new_concept"] = active
    right.text_input("Name of the new concept", key="new_concept", on_change=_name)
    return active.strip() or "artifact"


def _choose() -> None:
    chosen = st.session_state["concept"]
    st.session_state[ACTIVE] = "" if chosen == NEW_CONCEPT else chosen


def _name() -> None:
    st.session_state[ACTIVE] = st.session_state["new_concept"]


def apply_labels(context: Context, concept: str, labels: dict[str, int | None], *, activate: bool = True) -> None:
    """Write labels (None removes one) as one undoable change and say what happened; `activate` makes `concept` the
    one being annotated."""
    try:
        batch = annotation_store().set_labels(context.dataset_id, concept, labels)
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
        if activate:
            st.session_state[ACTIVE] = concept
    else:
        st.toast("Nothing changed: the labels were already stored.", icon=":material/info:")


def undo_last(context: Context) -> None:
    undone = annotation_store().undo(context.dataset_id)
    if undone is None:
        st.toast("Nothing to undo.", icon=":material/info:")
        return
    st.toast(f"Undid the last change: {undone['n']} label(s) of {undone['concept']}", icon=":material/undo:")
    _keep_active_concept(context)


def _keep_active_concept(context: Context) -> None:
    """When the active concept has no labels left (an undo, a delete), make the first remaining one active."""
    names = [c.name for c in annotation_store().concepts(context.dataset_id)]
    if st.session_state.get(ACTIVE) not in names:
        st.session_state[ACTIVE] = names[0] if names else None


def concept_manager(context: Context) -> None:
    """The dataset's concepts with their counts; rename or delete one (both undoable)."""
    st.dataframe(label_columns(context), hide_index=True, key="concepts_of_dataset")
    names = [c.name for c in annotation_store().concepts(context.dataset_id)]
    if not names:
        return
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Concept to change", names, key="manage_concept")
    c2.text_input("New name", value=chosen, key=f"manage_name_{chosen}")
    c3.button("Rename", key="manage_rename", on_click=_rename, args=(context, chosen))
    c4.button("Delete", key="manage_delete", icon=":material/delete:", on_click=_delete, args=(context, chosen))


def _rename(context: Context, concept: str) -> None:
    new = st.session_state[f"manage_name_{concept}"].strip()
    try:
        annotation_store().rename_concept(context.dataset_id, concept, new)
    except ClarcError as exc:
        st.toast(f"Not renamed: {exc}", icon=":material/error:")
        return
    if st.session_state.get(ACTIVE) == concept:
        st.session_state[ACTIVE] = new
    st.toast(f"Renamed “{concept}” to “{new}” (Undo reverts it)", icon=":material/edit:")


def _delete(context: Context, concept: str) -> None:
    annotation_store().delete_concept(context.dataset_id, concept)
    st.toast(f"Deleted the labels of “{concept}” (Undo brings them back)", icon=":material/delete:")
    _keep_active_concept(context)


def label_columns(context: Context) -> pd.DataFrame:
    """One row per concept of the dataset with its counts."""
    rows = [
        {"concept": c.name, "artifact": c.n_artifact, "clean": c.n_clean}
        for c in annotation_store().concepts(context.dataset_id)
    ]
    return pd.DataFrame(rows, columns=["concept", "artifact", "clean"])


def _fit_key(context: Context, concept: str) -> tuple[str, str, str]:
    return (context.model.sha256, context.dataset_id, concept)


def remember_cav(context: Context, concept: str, cav: Cav) -> None:
    st.session_state.setdefault("cavs", {})[_fit_key(context, concept)] = cav


def fitted_cav(context: Context, concept: str) -> Cav | None:
    """The CAV last fitted for `concept` in this session with this model and dataset, else the newest CAV saved for
    it (so a reload keeps the scores)."""
    cav = st.session_state.get("cavs", {}).get(_fit_key(context, concept))
    if cav is not None:
        return cav
    saved = [c for c in cav_library().list(dataset_id=context.dataset_id, model=context.model) if c.concept == concept]
    return saved[0].load() if saved else None


def cav_scores_for(context: Context, concept: str, split: str = EXPLORE_SPLIT) -> np.ndarray | None:
    """Scores of every sample of a split along the concept's CAV, or None when none was fitted or saved."""
    cav = fitted_cav(context, concept)
    if cav is None:
        return None
    return cav.scores(activations(context.model, context.dataset, cav.layer, cav.pooling, split))
