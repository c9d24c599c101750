"""Results: did the correction work? Before/after figures, the sweep's trade-off, heatmaps of the same images
before and after, and the corrected checkpoint with its model card to take away.
This page's session keys start with `results_`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app.context import current_context
from app.resources import before_after_heatmaps, executor, load_model
from backend.errors import ClarcError
from backend.evaluation import FIGURES, HEADLINE, EvaluationResult, describe_attack, estimate_notice
from backend.runs import (
    N_EXAMPLES,
    ConceptOutcome,
    RunRecord,
    RunResult,
    build_report,
    concept_rows,
    lesion_overlap_advice,
    load_examples,
    sweep_summary,
)
from components.plots import before_after_bars, confusion_heatmap, tradeoff_scatter
from components.thumbnails import thumbnail_png


def render() -> None:
    st.title("Results")
    current_context()  # a bad Setup choice stops the page with its message
    state = st.session_state
    store = executor().store
    runs = sorted(store.list(statuses=("succeeded",)), key=lambda r: r.finished or 0, reverse=True)
    if not runs:
        st.info("No finished correction run yet: launch one on **Correct**.")
        st.stop()
    by_id = {r.id: r for r in runs}
    if state.get("results_run") not in by_id:
        state["results_run"] = runs[0].id
    run_id = st.selectbox("Run", list(by_id), key="results_run", format_func=lambda i: f"{i} · {by_id[i].name}")
    record = by_id[run_id]
    _before_after(record)
    if record.sweep_id:
        st.subheader("The sweep's trade-off")
        rows = sweep_summary(store, record.sweep_id)
        st.plotly_chart(tradeoff_scatter(rows), key="results_tradeoff")
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="results_sweep_table")
    result = record.correction
    if len(result.concepts) > 1:
        _concepts(result)
    _per_class(result.before, result.after)
    _heatmaps(record)
    _export(record)


def _before_after(record: RunRecord) -> None:
    result = record.correction
    before, after = result.before, result.after
    pairs = [(f, getattr(before, k), getattr(after, k)) for k, f in FIGURES.items()]
    table = pd.DataFrame(
        [{"figure": f.label, "before": b, "after": a} for f, b, a in pairs if b is not None or a is not None]
    )
    table["change"] = table["after"] - table["before"]
    st.subheader("Before and after")
    outcome = result.concepts[0]
    trusted = outcome.reliable is True
    notice = estimate_notice(after)
    if notice and outcome.reliable is False:
        st.error(f"**The attacked figures below are not to be trusted.** {notice}", icon=":material/warning:")
    elif notice and not trusted:
        st.warning(notice, icon=":material/help:")
    for col, key in zip(st.columns(len(HEADLINE)), HEADLINE):
        figure, b, a = FIGURES[key], getattr(before, key), getattr(after, key)
        if a is not None:
            improved = figure.improved(b, a)
            attacked = key == "attacked_acc"
            col.metric(
                figure.label + (" (estimate)" if attacked and after.estimated else ""),
                figure.text(a),
                figure.change_text(b, a),
                delta_color="off"
                if improved is None or (attacked and not trusted)
                else "normal"
                if figure.higher_is_better
                else "inverse",
                help=f"95% interval: {figure.interval_text(after.attacked_acc_interval)}" if attacked else None,
            )
    st.caption(_attacked_caption(outcome) + f" Attacked images: {describe_attack(after)}.")
    if notice and trusted:
        st.caption(notice)
    advice = lesion_overlap_advice(outcome, record.config.get("loop", {}).get("augment", 0.0))
    if advice:
        st.info(advice, icon=":material/lightbulb:")
    left, right = st.columns([1, 1])
    left.dataframe(
        table,
        hide_index=True,
        key="results_before_after_table",
        column_config={c: st.column_config.NumberColumn(c, format="%.4f") for c in ("before", "after", "change")},
    )
    right.plotly_chart(
        before_after_bars({row.figure: {"before": row.before, "after": row.after} for row in table.itertuples()}),
        key="results_before_after_chart",
    )
    config, cav = record.config, result.cav
    st.caption(
        f"{config['method']} along the CAV {cav.name or '(' + str(cav.source) + ')'}: "
        f"{cav.kind} in `{cav.layer}`, {cav.pooling}-pooled, samples of "
        f"{'the attacked class' if cav.scope == 'attacked_class' else 'all classes'}, attacked class "
        f"{after.attacked_class or cav.attacked_class} · "
        f"options {config['method_options'] or 'default'} · "
        f"{len(result.history)} epoch{'' if len(result.history) == 1 else 's'} in {result.seconds:.1f} s "
        f"on {record.device}"
    )


def _attacked_caption(outcome: ConceptOutcome) -> str:
    """The attacked accuracy's intervals, the gap closed with its interval and, where test images are annotated
    with the artifact, their measured accuracy beside the estimate."""
    figure, before, after = FIGURES["attacked_acc"], outcome.before, outcome.after
    if after.attacked_acc is None:
        return ""
    parts = [
        f"Attacked accuracy {figure.text(before.attacked_acc)} ({figure.interval_text(before.attacked_acc_interval)})"
        f" → {figure.text(after.attacked_acc)} ({figure.interval_text(after.attacked_acc_interval)}), 95% intervals;"
        f" gap closed {outcome.gap_closed_text()} ({outcome.estimate_label})."
    ]
    if after.with_artifact_acc is not None:
        annotated = FIGURES["with_artifact_acc"]
        parts.append(
            f"Measured on the {after.n_annotated} test images annotated with the artifact: "
            f"{annotated.text(before.with_artifact_acc)} → {annotated.text(after.with_artifact_acc)}."
        )
    return " ".join(parts)


def _concepts(result: RunResult) -> None:
    """A row per concept of a run that corrected several: each artifact's own figures before and after (the
    figures above are the first concept's)."""
    st.subheader("Each concept")
    table = pd.DataFrame(concept_rows(result))
    st.dataframe(
        table,
        hide_index=True,
        key="results_concepts",
        column_config={
            c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns if c.endswith(("before", "after"))
        }
        | {"gap closed": st.column_config.NumberColumn("gap closed", format="percent")},
    )
    st.caption(
        "Gap closed: the share of the clean-vs-attacked accuracy gap of each concept that the correction removed, "
        "with its 95% interval. Attacked figures: measured (planted, or your attacked copy), a checked estimate "
        "(transplanted artifacts that move the model like natural ones), or an unreliable / unchecked estimate. "
        "The figures above (and the heatmaps below) are those of the first concept."
    )


def _per_class(before: EvaluationResult, after: EvaluationResult) -> None:
    """Accuracy per class and the confusion matrices, before and after."""
    st.subheader("Per class")
    classes = after.classes or list(after.clean_acc_per_class)
    rows = []
    for name in classes:
        row = {"class": name}
        for figure, key in (("clean", "clean_acc_per_class"), ("attacked", "attacked_acc_per_class")):
            for when, figures in (("before", before), ("after", after)):
                if getattr(figures, key):
                    row[f"{figure} {when}"] = getattr(figures, key).get(name)
        rows.append(row)
    table = pd.DataFrame(rows)
    st.dataframe(
        table,
        hide_index=True,
        key="results_per_class",
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns if c != "class"},
    )
    pairs = [("clean", "confusion"), ("attacked", "attacked_confusion")]
    shown = [(name, key) for name, key in pairs if getattr(before, key) and getattr(after, key)]
    for name, key in shown:
        c1, c2 = st.columns(2)
        c1.plotly_chart(
            confusion_heatmap(getattr(before, key), classes, f"{name}, before"), key=f"results_{key}_before"
        )
        c2.plotly_chart(confusion_heatmap(getattr(after, key), classes, f"{name}, after"), key=f"results_{key}_after")


def _heatmaps(record: RunRecord) -> None:
    st.subheader("Heatmaps before and after")
    config = record.config
    examples_path = record.outputs.get("examples")
    if not examples_path or not Path(examples_path).is_file():
        st.caption("This run kept no example images (it predates them, or its folder was moved).")
        return
    try:
        before_model = load_model(config["checkpoint"], Path(config["checkpoint"]).stat().st_mtime)
        after_path = record.outputs["checkpoint"]
        after_model = load_model(after_path, Path(after_path).stat().st_mtime)
    except (ClarcError, OSError, KeyError) as exc:
        st.error(f"Cannot load this run's models: {exc}")
        return
    examples = load_examples(examples_path)
    if not len(examples["images"]):
        st.caption("No attacked or annotated test images to show.")
        return
    maps_before, maps_after, pred_before, pred_after = before_after_heatmaps(before_model, after_model, examples_path)
    classes = before_model.meta.classes
    st.caption(
        "Test images with the artifact (attacked as the evaluation measured them, or annotated as showing it): the "
        "model before the correction (upper) and after (lower). Red is evidence for the predicted class."
    )
    for start in range(0, len(examples["images"]), N_EXAMPLES):
        for offset, col in enumerate(st.columns(N_EXAMPLES)):
            k = start + offset
            if k >= len(examples["images"]):
                break
            image = examples["images"][k]
            col.image(thumbnail_png(image, maps_before[k], "overlay"), caption=f"before → {classes[pred_before[k]]}")
            col.image(thumbnail_png(image, maps_after[k], "overlay"), caption=f"after → {classes[pred_after[k]]}")
            col.caption(f"{examples['sample_ids'][k]} · {classes[examples['labels'][k]]} · {examples['kinds'][k]}")


def _export(record: RunRecord) -> None:
    st.subheader("Export")
    checkpoint = Path(record.outputs["checkpoint"])
    card = Path(record.outputs["card"])
    downloads = (  # what, label, file, suffix, MIME type
        ("checkpoint", "Corrected checkpoint (.safetensors)", checkpoint, "safetensors", "application/octet-stream"),
        ("card", "Model card (.json)", card, "json", "application/json"),
    )
    columns = st.columns(3)
    for column, (what, label, path, suffix, mime) in zip(columns, downloads):
        column.download_button(
            label,
            path.read_bytes(),
            file_name=f"clarc-{record.id}.{suffix}",
            mime=mime,
            icon=":material/download:" if what == "checkpoint" else ":material/description:",
            type="primary" if what == "checkpoint" else "secondary",
            key=f"results_download_{what}",
        )
    _report(record, columns[2])
    with st.expander("Model card"):
        st.json(json.loads(card.read_text()), expanded=1)


def _report(record: RunRecord, column) -> None:
    """The audit report is built on request (both models explain the example images, a few seconds), then kept
    for this session so the download does not rebuild it."""
    key = f"results_report_{record.id}"
    state = st.session_state
    if key not in state:
        if column.button(
            "Build audit report (.html)",
            icon=":material/summarize:",
            key=f"results_build_report_{record.id}",
            help="One self-contained HTML page of this run (model, data, CAV, figures before/after, heatmaps, "
            "training): opens offline and prints to PDF.",
        ):
            with st.spinner("Building the audit report: both models explain the example images…"):
                try:
                    state[key] = build_report(executor().store, record.id)
                except ClarcError as exc:
                    column.error(str(exc))
                    return
    if key in state:
        column.download_button(
            "Audit report (.html)",
            state[key].encode("utf-8"),
            file_name=f"clarc-{record.id}-report.html",
            mime="text/html",
            icon=":material/summarize:",
            key=f"results_download_report_{record.id}",
        )


if __name__ == "__main__":
    render()
