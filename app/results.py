"""Results: did the correction work? Before/after figures, the sweep's trade-off, heatmaps of the same images
before and after, and the corrected checkpoint with its model card to take away.
This page's session keys start with `results_`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app.context import current_context
from app.resources import before_after_heatmaps, executor, load_dataset, load_model
from backend.errors import ClarcError
from backend.runs import RunRecord, sweep_summary
from components.plots import before_after_bars, tradeoff_scatter
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
N_EXAMPLES = 6


def render() -> None:
    st.title("Results")
    context = current_context()
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
    _heatmaps(record, context.spec)
    _export(record)


def _before_after(record: RunRecord) -> None:
    result = record.result or {}
    before, after = result.get("before", {}), result.get("after", {})
    table = pd.DataFrame(
        [
            {"figure": label, "before": before.get(k), "after": after.get(k)}
            for k, label in FIGURES.items()
            if before.get(k) is not None or after.get(k) is not None
        ]
    )
    table["change"] = table["after"] - table["before"]
    st.subheader("Before and after")
    for col, key in zip(st.columns(4), ("clean_acc", "attacked_acc", "tcav_sensitivity", "r_bias")):
        if after.get(key) is not None:
            delta = after[key] - before[key]
            is_acc = key.endswith("_acc")
            col.metric(
                FIGURES[key],
                f"{after[key]:.1%}" if is_acc else f"{after[key]:.3f}",
                f"{delta * 100:+.1f} pts" if is_acc else f"{delta:+.3f}",
                delta_color="normal" if is_acc else "inverse",
            )
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
    config = record.config
    st.caption(
        f"{config['method']} with a {config['cav_kind']} CAV in `{config.get('layer') or 'the default layer'}` · "
        f"options {config['method_options'] or 'default'} · {len(result.get('history', []))} epochs in "
        f"{result.get('seconds', 0):.1f} s on {record.device}"
    )


def _heatmaps(record: RunRecord, spec: str) -> None:
    st.subheader("Heatmaps before and after")
    config = record.config
    try:
        before_model = load_model(config["checkpoint"], Path(config["checkpoint"]).stat().st_mtime)
        after_path = record.outputs["checkpoint"]
        after_model = load_model(after_path, Path(after_path).stat().st_mtime)
        dataset = load_dataset(config.get("dataset") or spec)
    except (ClarcError, OSError, KeyError) as exc:
        st.error(f"Cannot load this run's models: {exc}")
        st.stop()
    if dataset.planting is None:
        st.caption("This dataset has no planted artifact to attack the test images with.")
        return
    view = dataset.split("test", "attacked")
    attacked = dataset.classes.index(dataset.planting.classes[0])
    indices = tuple(int(i) for i in np.flatnonzero(view.labels != attacked)[:N_EXAMPLES])
    st.caption(
        f"Test images of other classes with the {dataset.planting.artifact} added: left the model before, right after "
        f"the correction. Red is evidence for the predicted class."
    )
    maps_before, maps_after, pred_before, pred_after = before_after_heatmaps(
        before_model, after_model, dataset, indices
    )
    for k, (col, i) in enumerate(zip(st.columns(N_EXAMPLES), indices)):
        image = view.image(i)
        col.image(
            thumbnail_png(image, maps_before[k], "overlay"), caption=f"before → {dataset.classes[pred_before[k]]}"
        )
        col.image(thumbnail_png(image, maps_after[k], "overlay"), caption=f"after → {dataset.classes[pred_after[k]]}")
        col.caption(f"{view.sample_ids[i]} · {dataset.classes[view.labels[i]]}")


def _export(record: RunRecord) -> None:
    st.subheader("Export")
    checkpoint = Path(record.outputs["checkpoint"])
    card = Path(record.outputs["card"])
    d1, d2 = st.columns(2)
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
    with st.expander("Model card"):
        st.json(json.loads(card.read_text()), expanded=1)


if __name__ == "__main__":
    render()
