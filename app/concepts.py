"""Concepts: fit a CAV from a concept's annotations and judge it: score distributions, ROC, agreement between CAV
kinds, a test against random directions, how much of the artifact's effect it covers, where the concept sits in the
images, and what to annotate next. This page's session keys start with `concepts_`."""

from __future__ import annotations

import time
import zlib

import numpy as np
import pandas as pd
import streamlit as st

from app.analysis import activations_ready
from app.annotating import apply_labels, cav_scores_for, concept_picker, remember_cav
from app.context import Context, current_context
from app.resources import (
    EXPLORE_SPLIT,
    KEYS,
    annotation_store,
    cav_library,
    concept_fit,
    kind_divergence,
    localization,
    predictions,
)
from backend.concepts import (
    DEFAULT_POOLING,
    Cav,
    CavConfig,
    ConceptFit,
    cav_kinds,
    infer_attacked_class,
    roc_points,
    suggest_samples,
)
from backend.data import ClarcDataset
from backend.errors import ClarcError
from backend.evaluation import LOW_COVERAGE, AttackConfig, CavCoverage, cav_coverage, training_pairs
from backend.models import LoadedModel
from backend.options import options_of
from backend.runs import foreground_work
from components.plots import divergence_heatmap, roc_chart, score_histogram
from components.sample_grid import Tile, sample_grid
from components.thumbnails import thumbnail_png

SIGNIFICANCE_LEVEL = 0.05
# Below this share of the artifact's change along the CAV (pooled, or at every position), a correction along the CAV
# alone leaves most of the shortcut in the model.
# Transplanting for the coverage: donors and rounds (each donor is explained by LRP first).
_COVERAGE_ATTACK = AttackConfig(transplant_donors=64, transplant_rounds=1)


def render() -> None:
    st.title("Concepts")
    context = current_context()
    concept = concept_picker(context)
    labels = annotation_store().labels(context.dataset_id, concept)
    view = context.dataset.split(EXPLORE_SPLIT)
    in_train = set(view.sample_ids)
    n_artifact = sum(1 for sid, y in labels.items() if y == 1 and sid in in_train)
    st.caption(
        f"“{concept}”: {n_artifact} training samples annotated as showing it, {len(labels) - n_artifact} other "
        f"labels · layer `{context.layer}`"
    )
    if n_artifact < 2:
        st.info(
            "A CAV needs at least 2 training samples labelled as showing the concept (more give a better "
            "direction): annotate them on **Explore**. Samples not labelled count as without it."
        )
        _saved_cavs(context, None)
        return
    fit = _fit_form(context, concept, labels, view)
    if fit is not None:
        artifact_ids = tuple(sorted(sid for sid, y in labels.items() if y == 1 and sid in in_train))
        _quality(fit, _measured_coverage(context.model, context.dataset, fit.cav, artifact_ids))
        scores = cav_scores_for(context, concept)
        _separation(context, fit, scores)
        _compare_kinds(context, concept, st.session_state["concepts_fit_request"], cav_kinds())
        _localization(context, fit, scores)
        _suggestions(context, concept, labels, scores)
    _saved_cavs(context, fit)


def _fit_form(context: Context, concept: str, labels: dict[str, int], view) -> ConceptFit | None:
    """Kind, pooling, scope and attacked class, the Fit button, and the fit it asked for (None before any)."""
    state = st.session_state
    kinds = cav_kinds()
    kind_option = next(o for o in options_of(CavConfig) if o.name == "kind")
    classes = list(context.dataset.classes)
    inferred = infer_attacked_class(labels, view)
    k1, k2, k3, k4, k5 = st.columns([2, 1, 1.3, 1.5, 1], vertical_alignment="bottom")
    kind = k1.selectbox(
        kind_option.label,
        list(kinds),
        key="concepts_cav_kind",
        persist_state="session",
        format_func=lambda k: f"{k} — {kinds[k]}",
        help=kind_option.help,
    )
    poolings = ["mean", "max"]
    pooling = k2.selectbox(
        "Pooling",
        poolings,
        index=poolings.index(DEFAULT_POOLING),
        key="concepts_pooling",
        persist_state="session",
        help="how a layer's map becomes one value per channel (mean: the default, also what corrections use)",
    )
    scope = k3.selectbox(
        "Samples",
        ["attacked_class", "all"],
        key="concepts_scope",
        persist_state="session",
        format_func={"attacked_class": "of the attacked class", "all": "of all classes"}.get,
        help="fit on the samples of the class the artifact is tied to (the seed's default: the CAV then follows the "
        "artifact, not the class) or on all samples; samples not labelled count as without the concept",
    )
    attacked = k4.selectbox(
        "Attacked class",
        classes,
        index=classes.index(inferred),
        key=f"concepts_attacked_class_{concept}",
        format_func=lambda c: f"{c} (inferred)" if c == inferred else c,
        help="the class the artifact is tied to: inferred as the class of most annotated samples; override it here",
    )
    pairs = tuple(sorted(labels.items()))
    if k5.button("Fit CAV", type="primary", icon=":material/model_training:"):
        state["concepts_fit_request"] = {
            "concept": concept,
            "kind": kind,
            "pooling": pooling,
            "scope": scope,
            "attacked_class": attacked,
            "labels": pairs,
        }
    request = state.get("concepts_fit_request")
    if not request or request["concept"] != concept:
        return None
    if not activations_ready(context, context.layer, request["pooling"]):
        return None
    try:
        fit = concept_fit(
            context.model,
            context.dataset,
            context.layer,
            request["pooling"],
            request["kind"],
            request["scope"],
            request["attacked_class"],
            concept,
            request["labels"],
        )
    except ClarcError as exc:
        st.error(f"Cannot fit the CAV: {exc}")
        return None
    remember_cav(context, concept, fit.cav)
    if request["labels"] != pairs:
        st.info("The annotations changed since this fit; press **Fit CAV** to refit.")
    return fit


def _quality(fit: ConceptFit, coverage: CavCoverage | str) -> None:
    """The fit's figures in one row (one held-out AUC: the one the test against random CAVs compares), the verdict
    of that test, and the coverage of the artifact's effect with a warning when it is low (`coverage`: the
    measurement, or why there is none)."""
    sig = fit.significance
    held_out = sig.score if sig else fit.held_out_auc
    if sig:
        where = "30% of the fitting samples, held out; the figure tested against random CAVs below"
        if fit.held_out_auc is not None:
            where += f". On the planted artifact of the validation split (benchmark data only): {fit.held_out_auc:.3f}"
    else:
        where = "the planted artifact of the validation split (benchmark data only)"
    m = st.columns(6)
    m[0].metric("Kind", fit.cav.kind)
    m[1].metric("Separability (AUC)", f"{fit.train_auc:.3f}", help="how well the scores separate the fitting samples")
    m[2].metric("Held-out AUC", "—" if held_out is None else f"{held_out:.3f}", help=f"on {where}")
    _coverage_metric(m[3], coverage)
    m[4].metric(
        "Alignment with the artifact",
        "—" if fit.alignment is None else f"{fit.alignment:.3f}",
        help="cosine with the change the planted artifact causes in the layer (benchmark data only)",
    )
    n = 0 if sig is None else len(sig.null)
    m[5].metric("p against random CAVs", "—" if sig is None else _p_text(sig), help=f"{n} CAVs of random splits")
    _significance_verdict(sig)
    _coverage_verdict(coverage)


def _significance_verdict(sig) -> None:
    """Whether the CAV beats random directions, with the same held-out AUC as its tile."""
    if sig is None:
        st.info("Label at least 3 samples with and 3 without the concept to test the CAV against random directions.")
        return
    n = len(sig.null)
    spread = f"random CAVs reach {np.median(sig.null):.3f} (median), {sig.null.max():.3f} at best"
    if sig.p_value > SIGNIFICANCE_LEVEL:
        st.warning(
            f"This concept is not distinguishable from random splits of the same samples (held-out AUC "
            f"{sig.score:.3f}; {spread}; p = {sig.p_value:.3f}): annotate more, or check the labels."
        )
    else:
        p_value = _p_text(sig)
        p_value = p_value if p_value[0] in "<≤" else f"= {p_value}"
        st.success(f"Held-out AUC {sig.score:.3f} beats {n} CAVs of random splits ({spread}; p {p_value}).")


def _cav_key(cav: Cav) -> tuple:
    return cav.vector.tobytes(), cav.layer, cav.pooling, cav.attacked_class


@st.cache_data(
    show_spinner="Measuring how much of the artifact's effect the CAV covers…",
    max_entries=32,
    hash_funcs=KEYS | {Cav: _cav_key},
)
def _measured_coverage(
    model: LoadedModel, dataset: ClarcDataset, cav: Cav, artifact_ids: tuple[str, ...]
) -> CavCoverage | str:
    """The CAV's coverage on training images paired with and without the artifact (planted where the annotations
    are the planted artifact, else transplanted from them), or why it cannot be measured."""
    with foreground_work():
        try:
            pairs = training_pairs(model, dataset, cav, _COVERAGE_ATTACK, artifact_ids)
            if pairs is None:
                return "no training images to pair with and without the artifact"
            return cav_coverage(model, dataset, cav, pairs, artifact_ids=artifact_ids)[0]
        except ClarcError as exc:
            return str(exc)


def _coverage_metric(column, coverage: CavCoverage | str) -> None:
    if isinstance(coverage, str):
        column.metric("Coverage of the artifact", "—", help=f"not measured: {coverage}")
        return
    column.metric(
        "Coverage of the artifact",
        f"{coverage.coverage:.0%}",
        help=f"the share of the change the artifact causes in this layer's activations (pooled as the CAV) that lies "
        f"along the CAV; at every position of the layer's maps, what RR-ClArC's penalty sees, "
        f"{coverage.position_coverage:.0%}. Measured on {coverage.n_pairs} {coverage.source} training images, each "
        "with and without the artifact",
    )


def _coverage_verdict(coverage: CavCoverage | str) -> None:
    """A caption with both coverage figures, and a warning when either is low: what it means and what to do."""
    if isinstance(coverage, str):
        return
    pooled, position = coverage.coverage, coverage.position_coverage
    st.caption(
        f"Coverage: {pooled:.0%} of the artifact's change (pooled as the CAV), {position:.0%} at every position, "
        f"on {coverage.n_pairs} {coverage.source} training images with and without it; one direction could hold "
        f"{coverage.leading_share:.0%} and {coverage.position_leading_share:.0%} at best."
    )
    if min(pooled, position) >= LOW_COVERAGE:
        return
    where = "pooled" if pooled < LOW_COVERAGE else "at every position of the layer's maps"
    low = min(pooled, position)
    advice = (
        "Try a concept subspace: the CAV and the artifact's further directions, penalised together (rank 2–3; on "
        "the command line `--cav 'NAME;rank=3'` or `--rank 3`), or another layer, and check on **Results** which "
        "closes more of the gap: penalising more directions does not always remove more of the shortcut."
    )
    best = coverage.leading_share if pooled < LOW_COVERAGE else coverage.position_leading_share
    if best - low > 0.2:
        advice = (
            f"One direction could hold {best:.0%}: this CAV points away from the artifact's main effect; the pattern "
            "kind or more annotations may find it. " + advice
        )
    st.warning(
        f"Only {low:.0%} of the change the artifact causes in this layer ({where}) lies along the CAV. A correction "
        "along this one direction will leave the rest of the shortcut in the model: it can become blind along the "
        f"CAV and still use the artifact. {advice}"
    )


def _p_text(sig) -> str:
    """The p-value, or its bound when no random CAV reached the concept's score."""
    if (sig.null >= sig.score).sum() == 0:
        return f"< {1 / len(sig.null):.2g}" if len(sig.null) >= 100 else f"≤ {sig.p_value:.3f}"
    return f"{sig.p_value:.3f}"


def _separation(context: Context, fit: ConceptFit, scores: np.ndarray) -> None:
    """Score distributions and ROC of the samples the CAV was fitted on: with the concept vs without."""
    view = context.dataset.split(EXPLORE_SPLIT)
    position = {sid: i for i, sid in enumerate(view.sample_ids)}
    rows = np.array([position[sid] for sid in fit.cav.sample_ids])
    marked = set(fit.cav.concept_ids)
    y = np.array([int(sid in marked) for sid in fit.cav.sample_ids])
    left, right = st.columns(2)
    left.plotly_chart(score_histogram(scores[rows], y), key="concepts_score_histogram")
    fpr, tpr = roc_points(scores[rows], y)
    right.plotly_chart(roc_chart(fpr, tpr, fit.train_auc), key="concepts_roc")


def _compare_kinds(context: Context, concept: str, request: dict, kinds: dict[str, str]) -> None:
    with st.expander("Compare CAV kinds"):
        st.caption(
            "Cosine similarity between CAVs of every kind fitted on these annotations: filter CAVs often diverge."
        )
        wanted = (concept, request["pooling"], request["scope"], request["attacked_class"], request["labels"])
        if st.button("Fit every kind and compare", key="concepts_compare_button"):
            st.session_state["concepts_compared"] = wanted
        if st.session_state.get("concepts_compared") == wanted:
            similarity = kind_divergence(
                context.model, context.dataset, context.layer, *wanted[1:4], tuple(kinds), request["labels"]
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


def _saved_cavs(context: Context, fit: ConceptFit | None) -> None:
    """Save the fitted CAV under a name; list, rename, delete, export and import the saved ones."""
    st.subheader("Saved CAVs")
    st.caption(
        "A saved CAV is what **Correct** corrects along; it is kept in the workspace for this model and dataset."
    )
    library = cav_library()
    owner = dict(dataset_id=context.dataset_id, model=context.model)
    if fit is not None:
        s1, s2 = st.columns([3, 1], vertical_alignment="bottom")
        name = s1.text_input("Name", value=fit.cav.concept, key="concepts_save_name", help="e.g. ruler, v2")
        if s2.button("Save CAV", icon=":material/save:", key="concepts_save"):
            try:
                saved = library.save(fit, name, **owner)
            except ClarcError as exc:
                st.error(f"Not saved: {exc}")
            else:
                st.toast(f"Saved the CAV as “{saved.name}”", icon=":material/save:")
    records = library.list(**owner)
    if records:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": r.name,
                        "concept": r.concept,
                        "layer": r.layer,
                        "kind": r.kind,
                        "pooling": r.pooling,
                        "samples": "attacked class" if r.scope == "attacked_class" else "all classes",
                        "attacked class": r.attacked_class,
                        "with concept": r.n_concept,
                        "AUC": r.quality.get("train_auc"),
                        "saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
                    }
                    for r in records
                ]
            ),
            hide_index=True,
            key="concepts_saved_table",
        )
        _manage_saved(library, records)
    else:
        st.caption("No CAV saved yet.")
    upload = st.file_uploader("Import a CAV file (.json)", type=["json"], key="concepts_import")
    if upload is not None and st.button("Import CAV", icon=":material/upload:", key="concepts_import_button"):
        try:
            saved = library.import_bytes(upload.getvalue(), **owner)
        except ClarcError as exc:
            st.error(f"Not imported: {exc}")
        else:
            st.toast(f"Imported the CAV as “{saved.name}”", icon=":material/upload:")
            st.rerun()


def _manage_saved(library, records) -> None:
    by_id = {r.id: r for r in records}
    m1, m2, m3, m4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    # The box is keyed by the names it shows: the browser keeps a box's old labels when only its labels change (a
    # rename); the pick itself lives in `concepts_saved_id`.
    labels = zlib.crc32(repr(sorted((r.id, r.name) for r in records)).encode())
    ids = list(by_id)
    previous = st.session_state.get("concepts_saved_id")
    chosen = m1.selectbox(
        "Saved CAV",
        ids,
        index=ids.index(previous) if previous in by_id else 0,
        key=f"concepts_saved_{labels}",
        format_func=lambda i: by_id[i].name,
    )
    st.session_state["concepts_saved_id"] = chosen
    record = by_id[chosen]
    new_name = m2.text_input("New name", value=record.name, key=f"concepts_rename_{chosen}")
    if m3.button("Rename", key="concepts_rename_button", disabled=new_name.strip() == record.name):
        try:
            library.rename(chosen, new_name)
        except ClarcError as exc:
            st.error(f"Not renamed: {exc}")
        else:
            st.rerun()
    if m4.button("Delete", key="concepts_delete_button", icon=":material/delete:"):
        library.delete(chosen)
        st.toast(f"Deleted “{record.name}”", icon=":material/delete:")
        st.rerun()
    st.download_button(
        "Export as a file",
        library.export(chosen),
        file_name=f"cav-{record.name}.json",
        mime="application/json",
        icon=":material/download:",
        key="concepts_export",
    )


if __name__ == "__main__":
    render()
