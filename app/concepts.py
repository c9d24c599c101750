"""Concepts: fit a CAV from a concept's annotations and judge it: score distributions, ROC, agreement between CAV
kinds, a test against random directions, where the concept sits in the images, and what to annotate next.
This page's session keys start with `concepts_`."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.annotating import apply_labels, cav_scores_for, concept_picker, remember_cav
from app.context import Context, current_context
from app.resources import EXPLORE_SPLIT, annotation_store, concept_fit, kind_divergence, localization, predictions
from backend.concepts import CavConfig, ConceptFit, cav_kinds, roc_points, suggest_samples
from backend.errors import ClarcError
from backend.options import options_of
from components.plots import divergence_heatmap, roc_chart, score_histogram
from components.sample_grid import Tile, sample_grid
from components.thumbnails import thumbnail_png

SIGNIFICANCE_LEVEL = 0.05


def render() -> None:
    st.title("Concepts")
    context = current_context()
    state = st.session_state
    concept = concept_picker(context)
    labels = annotation_store().labels(context.dataset_id, concept)
    n_artifact = sum(labels.values())
    n_clean = len(labels) - n_artifact
    st.caption(f"“{concept}”: {n_artifact} artifact and {n_clean} clean samples annotated · layer `{context.layer}`")
    if min(n_artifact, n_clean) < 2:
        st.info(
            "A CAV needs at least 2 samples labelled artifact and 2 labelled clean (more give a better direction): "
            "annotate them on **Explore**."
        )
        st.stop()
    kinds = cav_kinds()
    kind_option = next(o for o in options_of(CavConfig) if o.name == "kind")
    k1, k2, k3 = st.columns([2, 1, 1])
    kind = k1.selectbox(
        kind_option.label,
        list(kinds),
        key="concepts_cav_kind",
        persist_state="session",
        format_func=lambda k: f"{k} — {kinds[k]}",
        help=kind_option.help,
    )
    pooling = k2.selectbox(
        "Pooling",
        ["max", "mean"],
        key="concepts_pooling",
        persist_state="session",
        help="how a layer's map becomes one value",
    )
    pairs = tuple(sorted(labels.items()))
    if k3.button("Fit CAV", type="primary", icon=":material/model_training:"):
        state["concepts_fit_request"] = {"concept": concept, "kind": kind, "pooling": pooling, "labels": pairs}
    request = state.get("concepts_fit_request")
    if not request or request["concept"] != concept:
        st.stop()
    try:
        fit = concept_fit(
            context.model,
            context.dataset,
            context.layer,
            request["pooling"],
            request["kind"],
            concept,
            request["labels"],
        )
    except ClarcError as exc:
        st.error(f"Cannot fit the CAV: {exc}")
        st.stop()
    remember_cav(context, concept, fit.cav)
    if request["labels"] != pairs:
        st.info("The annotations changed since this fit; press **Fit CAV** to refit.")
    _quality(fit)
    scores = cav_scores_for(context, concept)
    _separation(context, request, scores, fit)
    _compare_kinds(context, concept, request, kinds)
    _localization(context, fit, scores)
    _suggestions(context, concept, labels, scores)


def _quality(fit: ConceptFit) -> None:
    sig = fit.significance
    m = st.columns(5)
    m[0].metric("Kind", fit.cav.kind)
    m[1].metric("Separability (AUC)", f"{fit.train_auc:.3f}", help="how well the scores separate the annotated samples")
    m[2].metric(
        "Held-out AUC", "—" if fit.held_out_auc is None else f"{fit.held_out_auc:.3f}", help="on the validation split"
    )
    m[3].metric(
        "Alignment with the artifact",
        "—" if fit.alignment is None else f"{fit.alignment:.3f}",
        help="cosine with the change the planted artifact causes in the layer (benchmark data only)",
    )
    m[4].metric("p against random CAVs", "—" if sig is None else f"{sig.p_value:.3f}")
    if sig is None:
        st.info("Annotate at least 3 artifact and 3 clean samples to test the CAV against random directions.")
    elif sig.p_value > SIGNIFICANCE_LEVEL:
        st.warning(
            f"This concept is not distinguishable from random splits of the same samples (AUC on held-out "
            f"annotations {sig.score:.3f}, p = {sig.p_value:.3f}): annotate more, or check the labels."
        )
    else:
        st.success(f"Held-out AUC {sig.score:.3f} beats {len(sig.null)} CAVs of random splits (p = {sig.p_value:.3f}).")


def _separation(context: Context, request: dict, scores: np.ndarray, fit: ConceptFit) -> None:
    view = context.dataset.split(EXPLORE_SPLIT)
    position = {sid: i for i, sid in enumerate(view.sample_ids)}
    rows = np.array([position[sid] for sid, _ in request["labels"]])
    y = np.array([value for _, value in request["labels"]])
    left, right = st.columns(2)
    left.plotly_chart(score_histogram(scores[rows], y), key="concepts_score_histogram")
    fpr, tpr = roc_points(scores[rows], y)
    right.plotly_chart(roc_chart(fpr, tpr, fit.train_auc), key="concepts_roc")


def _compare_kinds(context: Context, concept: str, request: dict, kinds: dict[str, str]) -> None:
    with st.expander("Compare CAV kinds"):
        st.caption(
            "Cosine similarity between CAVs of every kind fitted on these annotations: filter CAVs often diverge."
        )
        wanted = (concept, request["pooling"], request["labels"])
        if st.button("Fit every kind and compare", key="concepts_compare_button"):
            st.session_state["concepts_compared"] = wanted
        if st.session_state.get("concepts_compared") == wanted:
            similarity = kind_divergence(
                context.model, context.dataset, context.layer, request["pooling"], tuple(kinds), request["labels"]
            )
            st.plotly_chart(divergence_heatmap(similarity), key="concepts_divergence")


def _localization(context: Context, fit: ConceptFit, scores: np.ndarray) -> None:
    st.subheader("Where the concept is")
    st.caption("Concept-conditional LRP on the training images with the highest scores: red marks what drives the CAV.")
    view = context.dataset.split(EXPLORE_SPLIT)
    top = np.argsort(-scores, kind="stable")[:8]
    cav = fit.cav
    maps = localization(
        context.model, context.dataset, cav.layer, tuple(float(v) for v in cav.vector), tuple(int(i) for i in top)
    )
    for col, i, heatmap in zip(st.columns(len(top)), top, maps):
        col.image(thumbnail_png(view.image(int(i)), heatmap, "overlay"), caption=view.sample_ids[i])


def _suggestions(context: Context, concept: str, labels: dict[str, int], scores: np.ndarray) -> None:
    st.subheader("Suggest next")
    st.caption("Unlabelled images with the highest scores: confirm or reject them.")
    view = context.dataset.split(EXPLORE_SPLIT)
    classes = list(context.dataset.classes)
    position = {sid: i for i, sid in enumerate(view.sample_ids)}
    preds = predictions(context.model, context.dataset)
    tiles = []
    for sid, score in suggest_samples(scores, view.sample_ids, labels, k=12):
        i = position[sid]
        caption = f"{sid} · {classes[preds.labels[i]]} → {classes[preds.predicted[i]]} · score {score:.2f}"
        tiles.append(Tile(sid, thumbnail_png(view.image(i)), caption, None))
    sample_grid(
        tiles,
        key="concepts_suggest",
        on_label=lambda sid, value: apply_labels(context, concept, {sid: value}),
        selectable=False,
    )


if __name__ == "__main__":
    render()
