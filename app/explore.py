"""Explore and annotate: browse the training images with predictions and LRP heatmaps, find the ones that show an
artifact, and label them under a named concept. Every label goes to the workspace's SQLite store at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.annotating import (
    apply_labels,
    cav_scores_for,
    concept_picker,
    label_columns,
    store,
    undo_last,
)
from app.context import current_context
from app.resources import EXPLORE_SPLIT, embedding, heatmaps, outlier_scores, predictions
from backend.errors import ClarcError
from components.plots import embedding_scatter, selected_rows
from components.sample_grid import LABEL_NAMES, Tile, pick_key, sample_grid
from components.thumbnails import data_url, thumbnail_png

PAGE_SIZE = 24
GRID_KEY = "explore"
SORTS = {
    "sample order": None,
    "confidence, lowest first": "confidence_up",
    "confidence, highest first": "confidence_down",
    "CAV score, highest first": "cav",
    "heatmap outlier score, highest first": "outlier",
}

st.title("Explore and annotate")
context = current_context()
model, dataset, spec = context.model, context.dataset, context.spec
state = st.session_state
view = dataset.split(EXPLORE_SPLIT)
classes = list(dataset.classes)
try:
    preds = predictions(model.sha256, spec, model)
except ClarcError as exc:
    st.error(str(exc))
    st.stop()

concept = concept_picker(context)
all_labels = store().all_labels(context.dataset_id)
labels = all_labels.get(concept, {})
cav_scores = cav_scores_for(context, concept)

mode = (
    st.segmented_control(
        "Explore by",
        ["Grid", "Embedding", "Import / export"],
        default="Grid",
        key="explore_mode",
        persist_state="session",
    )
    or "Grid"
)


def _thumbnail(index: int, heatmap: np.ndarray | None, look: str) -> bytes:
    return thumbnail_png(view.image(index), heatmap, look)


def _caption(i: int) -> str:
    truth, guess = classes[preds.labels[i]], classes[preds.predicted[i]]
    mark = "" if truth == guess else " ✗"
    return f"{view.sample_ids[i]} · {truth} → {guess} ({preds.confidence[i]:.0%}){mark}"


def _others(sid: str) -> str:
    return " · ".join(
        f"{name}: {LABEL_NAMES[lab[sid]]}" for name, lab in all_labels.items() if name != concept and sid in lab
    )


def _label_one(sample_id: str, label: int) -> None:
    apply_labels(context, concept, {sample_id: label})


def _picked() -> list[str]:
    """Ticked samples on every grid page seen since arriving on Explore."""
    return [sid for sid in view.sample_ids if state.get(pick_key(GRID_KEY, sid))]


def _label_picked(label: int | None) -> None:
    picked = _picked()
    if not picked:
        st.toast("Select some samples first.", icon=":material/info:")
        return
    apply_labels(context, concept, dict.fromkeys(picked, label))
    for sid in picked:
        state[pick_key(GRID_KEY, sid)] = False


def _pick_page(ids: list[str], value: bool) -> None:
    for sid in ids:
        state[pick_key(GRID_KEY, sid)] = value


if mode == "Grid":
    f1, f2, f3, f4 = st.columns([2, 2, 1.3, 2])
    true_classes = f1.multiselect("True class", classes, key="filter_true", persist_state="session", placeholder="all")
    pred_classes = f2.multiselect(
        "Predicted class", classes, key="filter_pred", persist_state="session", placeholder="all"
    )
    annotation = f3.selectbox(
        "Annotation", ["all", "unlabelled", "artifact", "clean"], key="filter_annotation", persist_state="session"
    )
    sort = f4.selectbox(
        "Sort by",
        list(SORTS),
        key="sort",
        persist_state="session",
        help="CAV score needs a CAV fitted on Concepts; the outlier score measures how far a heatmap is from "
        "the typical heatmap of its predicted class",
    )
    g1, g2 = st.columns([1, 1], vertical_alignment="bottom")
    wrong_only = g1.toggle("Misclassified only", key="filter_wrong", persist_state="session")
    look = (
        g2.segmented_control(
            "View", ["input", "heatmap", "overlay"], default="input", key="look", persist_state="session"
        )
        or "input"
    )

    keep = np.ones(len(view), dtype=bool)
    if true_classes:
        keep &= np.isin(preds.labels, [classes.index(c) for c in true_classes])
    if pred_classes:
        keep &= np.isin(preds.predicted, [classes.index(c) for c in pred_classes])
    if wrong_only:
        keep &= ~preds.correct
    if annotation != "all":
        state_of = np.array([labels.get(sid, -1) for sid in view.sample_ids])
        keep &= state_of == {"unlabelled": -1, "artifact": 1, "clean": 0}[annotation]
    order = np.flatnonzero(keep)
    key = SORTS[sort]
    if key == "cav" and cav_scores is None:
        st.info(f"Fit a CAV for “{concept}” on **Concepts** to sort by its score; showing sample order.")
        key = None
    if key == "outlier":
        scores = outlier_scores(model.sha256, spec, model)
        order = order[np.argsort(-scores[order], kind="stable")]
    elif key == "cav":
        order = order[np.argsort(-cav_scores[order], kind="stable")]
    elif key is not None:
        sign = 1 if key == "confidence_up" else -1
        order = order[np.argsort(sign * preds.confidence[order], kind="stable")]

    n_pages = max(1, -(-len(order) // PAGE_SIZE))
    st.caption(f"{len(order)} of {len(view)} training images match · {len(labels)} labelled for “{concept}”")
    if not len(order):
        st.warning("No image matches these filters.")
        st.stop()
    page = st.pagination(n_pages, key="grid_page", max_visible_pages=9)
    shown = order[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    maps = heatmaps(model.sha256, spec, tuple(int(i) for i in shown), model) if look != "input" else None
    page_ids = [view.sample_ids[i] for i in shown]

    bar = st.container(horizontal=True)
    bar.button("Select page", icon=":material/select_all:", on_click=_pick_page, args=(page_ids, True))
    bar.button("Clear selection", icon=":material/deselect:", on_click=lambda: _pick_page(_picked(), False))
    bar.button("Selected → artifact", icon=":material/flag:", type="primary", on_click=_label_picked, args=(1,))
    bar.button("Selected → clean", icon=":material/check:", on_click=_label_picked, args=(0,))
    bar.button("Remove labels", icon=":material/label_off:", on_click=_label_picked, args=(None,))
    bar.button("Undo", icon=":material/undo:", on_click=undo_last, args=(context,))
    n_picked = len(_picked())
    if n_picked:
        bar.caption(f"{n_picked} selected")

    tiles = [
        Tile(
            sample_id=sid,
            png=_thumbnail(int(i), None if maps is None else maps[k], look),
            caption=_caption(int(i)),
            label=labels.get(sid),
            others=_others(sid),
        )
        for k, (i, sid) in enumerate(zip(shown, page_ids))
    ]
    sample_grid(tiles, key=GRID_KEY, on_label=_label_one)

elif mode == "Embedding":
    e1, e2, e3 = st.columns(3)
    source = e1.selectbox(
        "Project",
        ["activations", "heatmaps"],
        key="embed_source",
        persist_state="session",
        help=f"activations of layer {context.layer} (max-pooled) or the LRP heatmaps",
    )
    method = e2.selectbox(
        "Method",
        ["pca", "tsne"],
        key="embed_method",
        persist_state="session",
        format_func={"pca": "PCA", "tsne": "t-SNE (slower)"}.get,
    )
    colour_options = ["class", "predicted class", "annotation"] + (["CAV score"] if cav_scores is not None else [])
    colour = e3.selectbox("Colour by", colour_options, key="embed_colour", persist_state="session")
    try:
        points = embedding(model.sha256, spec, context.layer, source, method, model)
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    values = {
        "class": [classes[k] for k in preds.labels],
        "predicted class": [classes[k] for k in preds.predicted],
        "annotation": [LABEL_NAMES.get(labels.get(sid), "unlabelled") for sid in view.sample_ids],
        "CAV score": cav_scores,
    }[colour]
    event = st.plotly_chart(
        embedding_scatter(points, values, colour, list(view.sample_ids)),
        key="embedding",
        on_select="rerun",
        selection_mode=("lasso", "box"),
    )
    chosen = selected_rows(event["selection"]["points"]) if event else []
    if not chosen:
        st.caption("Draw a lasso or a box around a cluster to review its images and label them.")
    else:
        st.subheader(f"{len(chosen)} selected")
        st.caption("Untick the images that do not show the concept, then save the rest.")
        shown = chosen[:200]
        if len(chosen) > len(shown):
            st.warning(f"Showing the first {len(shown)} of {len(chosen)}; select a smaller region to see them all.")
        table = pd.DataFrame(
            {
                "keep": True,
                "image": [data_url(_thumbnail(i, None, "input")) for i in shown],
                "sample_id": [view.sample_ids[i] for i in shown],
                "true class": [classes[preds.labels[i]] for i in shown],
                "predicted": [classes[preds.predicted[i]] for i in shown],
                "label": [LABEL_NAMES.get(labels.get(view.sample_ids[i]), "unlabelled") for i in shown],
            }
        )
        edited = st.data_editor(
            table,
            key=f"checklist_{hash(tuple(shown))}",
            hide_index=True,
            disabled=["image", "sample_id", "true class", "predicted", "label"],
            column_config={"image": st.column_config.ImageColumn("image", width="small")},
            row_height=56,
        )
        kept = edited.loc[edited["keep"], "sample_id"].tolist()
        name = st.text_input("Concept", value=concept, key="checklist_concept", help="e.g. skin marker, ruler")
        s1, s2 = st.columns(2)
        for col, value, icon, kind in ((s1, 1, ":material/flag:", "primary"), (s2, 0, ":material/check:", "secondary")):
            col.button(
                f"Save {len(kept)} as {LABEL_NAMES[value]}",
                type=kind,
                icon=icon,
                disabled=not kept,
                on_click=apply_labels,
                args=(context, name.strip() or concept, dict.fromkeys(kept, value)),
            )

else:
    st.subheader("Export")
    exports = store()
    x1, x2 = st.columns(2)
    x1.download_button(
        "Annotations as CSV",
        exports.export_csv(context.dataset_id),
        file_name="annotations.csv",
        mime="text/csv",
        icon=":material/download:",
    )
    x2.download_button(
        "Annotations as JSON",
        exports.export_json(context.dataset_id),
        file_name="annotations.json",
        mime="application/json",
        icon=":material/download:",
    )
    st.subheader("Import")
    st.caption(
        "CSV with columns `sample_id,label` and optionally `concept` (label 1/0 or artifact/clean), or the JSON "
        "this page exports. Unknown ids, duplicates and bad rows are reported and skipped."
    )
    upload = st.file_uploader("Annotation file", type=["csv", "json"], key="annotation_upload")
    if upload is not None and st.button("Import", icon=":material/upload:", type="primary"):
        fmt = "json" if upload.name.lower().endswith(".json") else "csv"
        try:
            report = exports.import_text(
                context.dataset_id,
                upload.getvalue().decode("utf-8-sig"),
                fmt,
                known_ids=view.sample_ids,
                concept=concept,
            )
        except (ClarcError, UnicodeDecodeError) as exc:
            st.error(f"Nothing imported: {exc}")
        else:
            (st.success if report.imported else st.warning)(report.summary())
            if report.bad_rows:
                st.dataframe(pd.DataFrame(report.bad_rows, columns=["line", "problem"]), hide_index=True)

st.divider()
st.caption("Concepts of this dataset")
st.dataframe(label_columns(context), hide_index=True)
