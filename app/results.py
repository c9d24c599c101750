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
from backend.evaluation import describe_attack
from backend.runs import N_EXAMPLES, RunRecord, build_report, concept_rows, load_examples, sweep_summary
from components.plots import before_after_bars, confusion_heatmap, tradeoff_scatter
from components.thumbnails import thumbnail_png

FIGURES = {
    "clean_acc": "clean accuracy",
    "attacked_acc": "attacked accuracy",
    "with_artifact_acc": "accuracy, annotated artifacts",
    "without_artifact_acc": "accuracy, the others",
    "tcav_sensitivity": "TCAV sensitivity",
    "tcav_score": "TCAV score",
    "r_bias": "R_bias (relevance on the artifact)",
}


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
    result = record.result or {}
    if len(result.get("concepts") or []) > 1:
        _concepts(result)
    _per_class(result.get("before", {}), result.get("after", {}))
    _heatmaps(record)
    _export(record)


def _before_after(record: RunRecord) -> None:
    result = record.result or {}
    before, after = result.get("before", {}), result.get("after", {})
    labels = FIGURES
    table = pd.DataFrame(
        [
            {"figure": label, "before": before.get(k), "after": after.get(k)}
            for k, label in labels.items()
            if before.get(k) is not None or after.get(k) is not None
        ]
    )
    table["change"] = table["after"] - table["before"]
    st.subheader("Before and after")
    for col, key in zip(st.columns(4), ("clean_acc", "attacked_acc", "tcav_sensitivity", "r_bias")):
        if after.get(key) is not None:
            delta = after[key] - before[key]
            is_acc = key.endswith("_acc")
            change = f"{delta * 100:+.1f} pts" if is_acc else f"{delta:+.3f}"
            unchanged = float(change.split()[0]) == 0  # "+0.0 pts" is no change: grey, not green
            col.metric(
                labels[key],
                f"{after[key]:.1%}" if is_acc else f"{after[key]:.3f}",
                change,
                delta_color="off" if unchanged else "normal" if is_acc else "inverse",
            )
    st.caption(f"Attacked images: {describe_attack(after)}.")
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
    config, cav = record.config, result.get("cav") or {}
    st.caption(
        f"{config['method']} along the CAV {cav.get('name') or '(' + str(cav.get('source')) + ')'}: "
        f"{cav.get('kind')} in `{cav.get('layer')}`, {cav.get('pooling')}-pooled, samples of "
        f"{'the attacked class' if cav.get('scope') == 'attacked_class' else 'all classes'}, attacked class "
        f"{after.get('attacked_class') or cav.get('attacked_class')} · "
        f"options {config['method_options'] or 'default'} · "
        f"{len(result.get('history', []))} epochs in {result.get('seconds', 0):.1f} s on {record.device}"
    )


def _concepts(result: dict) -> None:
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
        "Gap closed: the share of the clean-vs-attacked accuracy gap of each concept that the correction removed. "
        "The figures above (and the heatmaps below) are those of the first concept."
    )


def _per_class(before: dict, after: dict) -> None:
    """Accuracy per class and the confusion matrices, before and after."""
    st.subheader("Per class")
    classes = after.get("classes") or list(after.get("clean_acc_per_class", {}))
    rows = []
    for name in classes:
        row = {"class": name}
        for figure, key in (("clean", "clean_acc_per_class"), ("attacked", "attacked_acc_per_class")):
            for when, figures in (("before", before), ("after", after)):
                if figures.get(key):
                    row[f"{figure} {when}"] = figures[key].get(name)
        rows.append(row)
    table = pd.DataFrame(rows)
    st.dataframe(
        table,
        hide_index=True,
        key="results_per_class",
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns if c != "class"},
    )
    pairs = [("clean", "confusion"), ("attacked", "attacked_confusion")]
    shown = [(name, key) for name, key in pairs if before.get(key) and after.get(key)]
    for name, key in shown:
        c1, c2 = st.columns(2)
        c1.plotly_chart(confusion_heatmap(before[key], classes, f"{name}, before"), key=f"results_{key}_before")
        c2.plotly_chart(confusion_heatmap(after[key], classes, f"{name}, after"), key=f"results_{key}_after")


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
    d1, d2, d3 = st.columns(3)
    d1.download_button(
        "Corrected checkpoint (.safetensors)",
        checkpoint.read_bytes(),
        file_name=f"clarc-{record.id}.safetensors",
        mime="application/octet-stream",
        icon=":material/download:",
        type="primary",
        key="results_download_checkpoint",
    )
    d2.download_button(
        "Model card (.json)",
        card.read_bytes(),
        file_name=f"clarc-{record.id}.json",
        mime="application/json",
        icon=":material/description:",
        key="results_download_card",
    )
    _report(record, d3)
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
