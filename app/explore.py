"""Explore and annotate: browse the training images with predictions and LRP heatmaps, find the ones that show an
artifact, and label them under a named concept. Every label goes to the workspace's SQLite store at once.
This page's session keys start with `explore_`."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app.analysis import analysis_job, analysis_panel, in_background, started_analysis
from app.annotating import REVIEW, apply_labels, cav_scores_for, concept_manager, concept_picker, undo_last
from app.context import Context, current_context
from app.resources import (
    EXPLORE_SPLIT,
    annotation_store,
    embedding,
    heatmaps,
    outlier_scores,
    predictions,
    predictions_ready,
    stored_embedding,
    stored_outliers,
)
from backend.data import SPLITS, SplitView
from backend.errors import ClarcError
from backend.evaluation import Predictions
from backend.runs import AnalysisJob
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


@dataclass(frozen=True)
class _Page:
    """What every part of the page works on: the context, the training split, its predictions and the labels."""

    context: Context
    view: SplitView
    preds: Predictions
    concept: str
    all_labels: dict[str, dict[str, int]]
    cav_scores: np.ndarray | None
    background: bool = False  # analysed by a background job: `view` holds the images predicted so far

    @property
    def complete(self) -> bool:
        """Whether every image of the split has its prediction."""
        return len(self.view) == len(self.context.dataset.split(self.view.split))

    @property
    def labels(self) -> dict[str, int]:
        return self.all_labels.get(self.concept, {})

    @property
    def classes(self) -> list[str]:
        return list(self.context.dataset.classes)

    def caption(self, i: int) -> str:
        truth, guess = self.classes[self.preds.labels[i]], self.classes[self.preds.predicted[i]]
        mark = "" if truth == guess else " ✗"
        name = self.view.sample_ids[i].rsplit("/", 1)[-1]  # the file name; its folders repeat the class
        return f"{name} · {truth} → {guess} ({self.preds.confidence[i]:.0%}){mark}"

    def others(self, sid: str) -> str:
        """The sample's labels of the other concepts, one line."""
        return " · ".join(
            f"{name}: {LABEL_NAMES[lab[sid]]}"
            for name, lab in self.all_labels.items()
            if name != self.concept and sid in lab
        )


def render() -> None:
    st.title("Explore and annotate")
    context = current_context()
    split = (
        st.segmented_control(
            "Split",
            list(SPLITS),
            default=EXPLORE_SPLIT,
            key="explore_split",
            persist_state="session",
            help="CAVs are fitted on training images; artifacts annotated in the test split give the accuracy with and "
            "without them after a correction",
        )
        or EXPLORE_SPLIT
    )
    try:
        preds, background = _split_predictions(context, split)
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    concept = concept_picker(context)
    view = context.dataset.split(split)
    view = view.head(len(preds.sample_ids)) if background else view
    scores = cav_scores_for(context, concept, split)
    page = _Page(
        context=context,
        view=view,
        preds=preds,
        concept=concept,
        all_labels=annotation_store().all_labels(context.dataset_id),
        cav_scores=None if scores is None else scores[: len(view)],
        background=background,
    )
    if st.session_state.get(REVIEW):
        _review(page, st.session_state[REVIEW])
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
    {"Grid": _grid, "Embedding": _embedding, "Import / export": _import_export}[mode](page)
    st.divider()
    st.caption("Concepts of this dataset")
    concept_manager(context)


def _split_predictions(context: Context, split: str) -> tuple[Predictions, bool]:
    """The split's predictions, and whether they come from a background analysis. A small split is predicted
    inline; a large one by an analysis job whose progress shows here, with the images predicted so far (the page
    stops until the first are)."""
    if not in_background(context.dataset, split):
        return predictions(context.model, context.dataset, split), False
    total = len(context.dataset.split(split))
    preds = predictions_ready(context.model, context.dataset, split)
    ready = 0 if preds is None else len(preds.sample_ids)
    if ready < total or stored_outliers(context.model, context.dataset, split, preds.predicted) is None:
        job = analysis_job(context, split)

        def count_ready() -> int:
            now = predictions_ready(context.model, context.dataset, split)
            return 0 if now is None else len(now.sample_ids)

        analysis_panel(job, started_analysis(job), ready, total, count_ready)
    if not ready:
        st.caption("The images appear here as soon as their predictions are in.")
        st.stop()
    return preds, True


def _picked(view: SplitView) -> list[str]:
    """Ticked samples on every grid page seen since arriving on Explore."""
    return [sid for sid in view.sample_ids if st.session_state.get(pick_key(GRID_KEY, sid))]


def _label_picked(page: _Page, label: int | None) -> None:
    picked = _picked(page.view)
    if not picked:
        st.toast("Select some samples first.", icon=":material/info:")
        return
    apply_labels(page.context, page.concept, dict.fromkeys(picked, label))
    for sid in picked:
        st.session_state[pick_key(GRID_KEY, sid)] = False


def _pick(ids: list[str], value: bool) -> None:
    for sid in ids:
        st.session_state[pick_key(GRID_KEY, sid)] = value


@dataclass(frozen=True)
class _Filters:
    true_classes: list[str]
    pred_classes: list[str]
    annotation: str
    sort: str
    wrong_only: bool


def _filter_row(classes: list[str]) -> tuple[_Filters, str]:
    """The filter and sort inputs, and the view mode of the tiles."""
    f1, f2, f3, f4 = st.columns([2, 2, 1.3, 2])
    true_classes = f1.multiselect(
        "True class", classes, key="explore_filter_true", persist_state="session", placeholder="all"
    )
    pred_classes = f2.multiselect(
        "Predicted class", classes, key="explore_filter_pred", persist_state="session", placeholder="all"
    )
    annotation = f3.selectbox(
        "Annotation",
        ["all", "unlabelled", "artifact", "clean"],
        key="explore_filter_annotation",
        persist_state="session",
    )
    sort = f4.selectbox(
        "Sort by",
        list(SORTS),
        key="explore_sort",
        persist_state="session",
        help="CAV score needs a CAV fitted on Concepts; the outlier score measures how far a heatmap is from "
        "the typical heatmap of its predicted class",
    )
    g1, g2 = st.columns([1, 1], vertical_alignment="bottom")
    wrong_only = g1.toggle("Misclassified only", key="explore_filter_wrong", persist_state="session")
    look = (
        g2.segmented_control(
            "View", ["input", "heatmap", "overlay"], default="input", key="explore_look", persist_state="session"
        )
        or "input"
    )
    return _Filters(true_classes, pred_classes, annotation, sort, wrong_only), look


def _grid_order(page: _Page, filters: _Filters) -> np.ndarray:
    """The indices of the training images that match the filters, in the chosen order."""
    classes, preds, view = page.classes, page.preds, page.view
    keep = np.ones(len(view), dtype=bool)
    if filters.true_classes:
        keep &= np.isin(preds.labels, [classes.index(c) for c in filters.true_classes])
    if filters.pred_classes:
        keep &= np.isin(preds.predicted, [classes.index(c) for c in filters.pred_classes])
    if filters.wrong_only:
        keep &= ~preds.correct
    if filters.annotation != "all":
        state_of = np.array([page.labels.get(sid, -1) for sid in view.sample_ids])
        keep &= state_of == {"unlabelled": -1, "artifact": 1, "clean": 0}[filters.annotation]
    order = np.flatnonzero(keep)
    key = SORTS[filters.sort]
    if key == "cav" and page.cav_scores is None:
        st.info(f"Fit a CAV for “{page.concept}” on **Concepts** to sort by its score; showing sample order.")
        key = None
    if key == "outlier":
        scores = _outlier_scores(page)
        if scores is None:
            st.info(
                "The heatmap outlier scores come from the split's background analysis (above) once it has made every "
                "heatmap; showing sample order until then."
            )
        else:
            order = order[np.argsort(-scores[order], kind="stable")]
    elif key == "cav":
        order = order[np.argsort(-page.cav_scores[order], kind="stable")]
    elif key is not None:
        sign = 1 if key == "confidence_up" else -1
        order = order[np.argsort(sign * preds.confidence[order], kind="stable")]
    return order


def _outlier_scores(page: _Page) -> np.ndarray | None:
    """Every image's heatmap outlier score: computed here for a small split, stored by the analysis job for a large
    one (None until it is)."""
    context, split = page.context, page.view.split
    if not page.background:
        return outlier_scores(context.model, context.dataset, split)
    return stored_outliers(context.model, context.dataset, split, page.preds.predicted) if page.complete else None


def _grid(page: _Page) -> None:
    context, view = page.context, page.view
    filters, look = _filter_row(page.classes)
    order = _grid_order(page, filters)
    n_pages = max(1, -(-len(order) // PAGE_SIZE))
    images = "training images" if view.split == "train" else f"{view.split} images"
    st.caption(f"{len(order)} of {len(view)} {images} match · {len(page.labels)} labelled for “{page.concept}”")
    if not len(order):
        st.warning("No image matches these filters.")
        st.stop()
    # one pager per filter setting: other filters start on their first page
    signature = zlib.crc32(repr((filters, view.split, page.concept)).encode())
    number = st.pagination(n_pages, key=f"explore_grid_page_{signature}", max_visible_pages=9)
    shown = order[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    shown_ids = tuple(int(i) for i in shown)
    maps = heatmaps(context.model, context.dataset, shown_ids, view.split) if look != "input" else None
    page_ids = [view.sample_ids[i] for i in shown]

    bar = st.container(horizontal=True)
    bar.button("Select page", icon=":material/select_all:", on_click=_pick, args=(page_ids, True))
    bar.button("Clear selection", icon=":material/deselect:", on_click=lambda: _pick(_picked(view), False))
    bar.button("Selected → artifact", icon=":material/flag:", type="primary", on_click=_label_picked, args=(page, 1))
    bar.button("Selected → clean", icon=":material/check:", on_click=_label_picked, args=(page, 0))
    bar.button("Remove labels", icon=":material/label_off:", on_click=_label_picked, args=(page, None))
    bar.button("Undo", icon=":material/undo:", on_click=undo_last, args=(context,))
    n_picked = len(_picked(view))
    if n_picked:
        bar.caption(f"{n_picked} selected")

    tiles = [
        Tile(
            sample_id=sid,
            png=thumbnail_png(view.image(int(i)), None if maps is None else maps[k], look),
            caption=page.caption(int(i)),
            label=page.labels.get(sid),
            others=page.others(sid),
        )
        for k, (i, sid) in enumerate(zip(shown, page_ids))
    ]
    sample_grid(tiles, key=GRID_KEY, on_label=lambda sid, label: apply_labels(context, page.concept, {sid: label}))


def _embedding(page: _Page) -> None:
    context, view, classes, preds = page.context, page.view, page.classes, page.preds
    if not page.complete:
        st.info(
            "The embedding needs every image's activations: it is offered once the analysis has predicted them all."
        )
        return
    e1, e2, e3 = st.columns(3)
    source = e1.selectbox(
        "Project",
        ["activations", "heatmaps"],
        key="explore_embed_source",
        persist_state="session",
        help=f"activations of layer {context.layer} (max-pooled) or the LRP heatmaps",
    )
    method = e2.selectbox(
        "Method",
        ["pca", "tsne"],
        key="explore_embed_method",
        persist_state="session",
        format_func={"pca": "PCA", "tsne": "t-SNE (slower)"}.get,
    )
    colour_options = ["class", "predicted class", "annotation"] + (["CAV score"] if page.cav_scores is not None else [])
    colour = e3.selectbox("Colour by", colour_options, key="explore_embed_colour", persist_state="session")
    if page.background and source == "heatmaps" and _outlier_scores(page) is None:
        st.info("The heatmap embedding needs every image's heatmap: it is offered once the analysis has made them all.")
        return
    try:
        if page.background:  # a large split's map is made by an analysis job; the page shows its progress
            points = stored_embedding(context.model, context.dataset, context.layer, source, method, view.split)
            if points is None:
                _embedding_job(page, source, method)
                return
        else:
            points = embedding(context.model, context.dataset, context.layer, source, method, view.split)
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    values = {
        "class": [classes[k] for k in preds.labels],
        "predicted class": [classes[k] for k in preds.predicted],
        "annotation": [LABEL_NAMES.get(page.labels.get(sid), "unlabelled") for sid in view.sample_ids],
        "CAV score": page.cav_scores,
    }[colour]
    event = st.plotly_chart(
        embedding_scatter(points, values, colour, list(view.sample_ids), categories=classes),
        key="explore_embedding",
        on_select="rerun",
        selection_mode=("lasso", "box"),
    )
    chosen = selected_rows(event["selection"]["points"]) if event else []
    if not chosen:
        st.caption("Draw a lasso or a box around a cluster to review its images and label them.")
        return
    _checklist(page, chosen)


def _embedding_job(page: _Page, source: str, method: str) -> None:
    """The analysis job that maps a large split (PCA and t-SNE of 20,000 images take seconds to minutes), with its
    progress beside the split's own analysis."""
    context, n = page.context, len(page.view)
    job = AnalysisJob(
        checkpoint=context.checkpoint,
        dataset=context.spec,
        split=page.view.split,
        layers=(context.layer,),
        heatmaps=source == "heatmaps",
        embeddings=(f"{source}/{method}",),
    )
    note = "The map shows here when it is done; the grid works meanwhile."
    analysis_panel(job, started_analysis(job), n, n, lambda: n, note=note, key="embedding_job")


CHECKLIST_MAX = 1000  # rows a lasso's checklist lists (thumbnails included); a larger selection is refused


def _review(page: _Page, review: dict) -> None:
    """Images another page proposed (a Reveal candidate) in the checklist, ticked: untick the false positives."""
    with st.container(border=True):
        st.subheader(f"Review: {review['title']}")
        st.caption(
            f"Reveal proposed these images as one candidate shortcut. Untick those that do not show it, then save the "
            f"rest as **artifact** under the concept (named **{review['concept']}**; rename it here)."
        )
        position = {sid: i for i, sid in enumerate(page.view.sample_ids)}
        chosen = [position[sid] for sid in review["sample_ids"] if sid in position]
        if chosen:
            _checklist(page, chosen, ticked=True, key="explore_review")
        else:
            st.warning(f"None of these images is in the {page.view.split} split: Reveal looks at the training split.")
        st.button("Close the review", key="explore_review_close", on_click=lambda: st.session_state.pop(REVIEW, None))


def _checklist(page: _Page, chosen: list[int], ticked: bool = False, key: str = "explore_checklist") -> None:
    """The images of a selection: tick those that show the concept and save them under a concept. Rows start
    unticked (`ticked`: ticked); labels a sample already has for that concept are kept unless overwriting is asked
    for. `key` prefixes the widgets' keys, so two checklists can share the page."""
    view, classes, preds, state = page.view, page.classes, page.preds, st.session_state
    st.subheader(f"{len(chosen)} selected")
    if len(chosen) > CHECKLIST_MAX:
        st.warning(
            f"{len(chosen)} images are more than a checklist can show ({CHECKLIST_MAX}): select a smaller region."
        )
        return
    st.caption("Tick the images that show the concept (or tick all and untick the false positives), then save them.")
    selection = hash(tuple(chosen))
    all_key = f"{key}_all_{selection}"
    t1, t2, _ = st.columns([1, 1, 4])
    t1.button("Tick all", key=f"{key}_tick_all", on_click=lambda: state.update({all_key: True}))
    t2.button("Untick all", key=f"{key}_untick_all", on_click=lambda: state.update({all_key: False}))
    ticked = bool(state.get(all_key, ticked))
    table = pd.DataFrame(
        {
            "keep": ticked,
            "image": [data_url(thumbnail_png(view.image(i))) for i in chosen],
            "sample_id": [view.sample_ids[i] for i in chosen],
            "true class": [classes[preds.labels[i]] for i in chosen],
            "predicted": [classes[preds.predicted[i]] for i in chosen],
            "label": [LABEL_NAMES.get(page.labels.get(view.sample_ids[i]), "unlabelled") for i in chosen],
        }
    )
    edited = st.data_editor(
        table,
        key=f"{key}_{selection}_{int(ticked)}",
        hide_index=True,
        disabled=["image", "sample_id", "true class", "predicted", "label"],
        column_config={"image": st.column_config.ImageColumn("image", width="small")},
        row_height=56,
    )
    kept = edited.loc[edited["keep"], "sample_id"].tolist()
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input("Concept", value=page.concept, key=f"{key}_concept", help="e.g. skin marker, ruler")
    overwrite = c2.toggle("Overwrite existing labels", key=f"{key}_overwrite")
    target = name.strip() or page.concept
    existing = page.all_labels.get(target, {})
    s1, s2 = st.columns(2)
    for col, value, icon, kind in ((s1, 1, ":material/flag:", "primary"), (s2, 0, ":material/check:", "secondary")):
        todo = {sid: value for sid in kept if overwrite or sid not in existing}
        skipped = len(kept) - len(todo)
        col.button(
            f"Save {len(todo)} as {LABEL_NAMES[value]}" + (f" ({skipped} already labelled, kept)" if skipped else ""),
            type=kind,
            icon=icon,
            key=f"{key}_save_{value}",
            disabled=not todo,
            on_click=apply_labels,
            args=(page.context, target, todo),
            kwargs={"activate": target == page.concept},
        )


def _import_export(page: _Page) -> None:
    context = page.context
    st.subheader("Export")
    exports = annotation_store()
    formats = (
        ("CSV", exports.export_csv, "csv", "text/csv"),
        ("JSON", exports.export_json, "json", "application/json"),
    )
    for column, (name, export, suffix, mime) in zip(st.columns(2), formats):
        column.download_button(
            f"Annotations as {name}",
            export(context.dataset_id),
            file_name=f"annotations.{suffix}",
            mime=mime,
            icon=":material/download:",
        )
    st.subheader("Import")
    st.caption(
        "CSV with columns `sample_id,label` and optionally `concept` (label 1/0 or artifact/clean), or the JSON "
        "this page exports. Unknown ids, duplicates and bad rows are reported and skipped."
    )
    upload = st.file_uploader("Annotation file", type=["csv", "json"], key="explore_annotation_upload")
    if upload is not None and st.button("Import", icon=":material/upload:", type="primary"):
        fmt = "json" if upload.name.lower().endswith(".json") else "csv"
        try:
            report = exports.import_text(
                context.dataset_id,
                upload.getvalue().decode("utf-8-sig"),
                fmt,
                known_ids={sid for split in SPLITS for sid in context.dataset.split(split).sample_ids},
                concept=page.concept,
            )
        except (ClarcError, UnicodeDecodeError) as exc:
            st.error(f"Nothing imported: {exc}")
        else:
            (st.success if report.imported else st.warning)(report.summary())
            if report.bad_rows:
                st.dataframe(pd.DataFrame(report.bad_rows, columns=["line", "problem"]), hide_index=True)


if __name__ == "__main__":
    render()
