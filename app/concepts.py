"""Concepts: fit a CAV from a concept's annotations and judge it: score distributions, ROC, agreement between CAV
kinds, a test against random directions, where the concept sits in the images, and what to annotate next."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.annotating import apply_labels, cav_scores_for, concept_picker, remember_cav, store
from app.context import current_context
from app.resources import EXPLORE_SPLIT, concept_fit, kind_divergence, localization, predictions
from backend.cav import cav_kinds
from backend.cav_quality import suggest_samples
from backend.errors import ClarcError
from backend.inspection import roc_points
from components.plots import divergence_heatmap, roc_chart, score_histogram
from components.sample_grid import Tile, sample_grid
from components.thumbnails import thumbnail_png

SIGNIFICANCE_LEVEL = 0.05

st.title("Concepts")
context = current_context()
model, dataset, spec = context.model, context.dataset, context.spec
state = st.session_state
view = dataset.split(EXPLORE_SPLIT)
classes = list(dataset.classes)

concept = concept_picker(context)
labels = store().labels(context.dataset_id, concept)
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
k1, k2, k3 = st.columns([2, 1, 1])
kind = k1.selectbox(
    "CAV kind",
    list(kinds),
    key="cav_kind",
    persist_state="session",
    format_func=lambda k: f"{k} — {kinds[k]}",
    help="pattern CAVs follow the artifact's signal (robust, the default); filter CAVs (svm, ridge, lasso, "
    "logistic) separate the samples but may point elsewhere",
)
pooling = k2.selectbox(
    "Pooling", ["max", "mean"], key="cav_pooling", persist_state="session", help="how a layer's map becomes one value"
)
pairs = tuple(sorted(labels.items()))
if k3.button("Fit CAV", type="primary", icon=":material/model_training:"):
    state["fit_request"] = {"concept": concept, "kind": kind, "pooling": pooling, "labels": pairs}

request = state.get("fit_request")
if not request or request["concept"] != concept:
    st.stop()
try:
    fit = concept_fit(
        model.sha256, spec, context.layer, request["pooling"], request["kind"], concept, request["labels"], model
    )
except ClarcError as exc:
    st.error(f"Cannot fit the CAV: {exc}")
    st.stop()
cav = fit.cav
remember_cav(context, concept, cav)
if request["labels"] != pairs:
    st.info("The annotations changed since this fit; press **Fit CAV** to refit.")

sig = fit.significance
m = st.columns(5)
m[0].metric("Kind", cav.kind)
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
else:
    if sig.p_value > SIGNIFICANCE_LEVEL:
        st.warning(
            f"This concept is not distinguishable from random splits of the same samples (AUC on held-out "
            f"annotations {sig.score:.3f}, p = {sig.p_value:.3f}): annotate more, or check the labels."
        )
    else:
        st.success(f"Held-out AUC {sig.score:.3f} beats {len(sig.null)} CAVs of random splits (p = {sig.p_value:.3f}).")

scores = cav_scores_for(context, concept)
position = {sid: i for i, sid in enumerate(view.sample_ids)}
rows = np.array([position[sid] for sid, _ in request["labels"]])
y = np.array([value for _, value in request["labels"]])
left, right = st.columns(2)
left.plotly_chart(score_histogram(scores[rows], y), key="score_histogram")
fpr, tpr = roc_points(scores[rows], y)
right.plotly_chart(roc_chart(fpr, tpr, fit.train_auc), key="roc")

with st.expander("Compare CAV kinds"):
    st.caption("Cosine similarity between CAVs of every kind fitted on these annotations: filter CAVs often diverge.")
    if st.button("Fit every kind and compare", key="compare_kinds"):
        state["compare_kinds"] = (concept, request["pooling"], request["labels"])
    if state.get("compare_kinds") == (concept, request["pooling"], request["labels"]):
        similarity = kind_divergence(
            model.sha256, spec, context.layer, request["pooling"], tuple(kinds), request["labels"], model
        )
        st.plotly_chart(divergence_heatmap(similarity), key="divergence")

st.subheader("Where the concept is")
st.caption("Concept-conditional LRP on the training images with the highest scores: red marks what drives the CAV.")
top = np.argsort(-scores, kind="stable")[:8]
maps = localization(
    model.sha256, spec, cav.layer, tuple(float(v) for v in cav.vector), tuple(int(i) for i in top), model
)
cols = st.columns(len(top))
for col, i, heatmap in zip(cols, top, maps):
    col.image(thumbnail_png(view.image(int(i)), heatmap, "overlay"), caption=view.sample_ids[i])

st.subheader("Suggest next")
st.caption("Unlabelled images with the highest scores: confirm or reject them.")
preds = predictions(model.sha256, spec, model)
suggestions = suggest_samples(scores, view.sample_ids, labels, k=12)


def _label(sample_id: str, value: int) -> None:
    apply_labels(context, concept, {sample_id: value})


tiles = []
for sid, score in suggestions:
    i = position[sid]
    caption = f"{sid} · {classes[preds.labels[i]]} → {classes[preds.predicted[i]]} · score {score:.2f}"
    tiles.append(Tile(sid, thumbnail_png(view.image(i)), caption, None))
sample_grid(tiles, key="suggest", on_label=_label, selectable=False)
