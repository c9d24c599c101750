"""Correct: choose a method and its knobs, launch a run or a λ sweep through the run store, and watch it: progress,
loss curves and status update by themselves; cancel any time. Runs live in worker processes, not in the page."""

from __future__ import annotations

import time
from dataclasses import fields

import pandas as pd
import streamlit as st
import torch

from app.annotating import store
from app.context import current_context
from backend.annotations import concept_labels_file
from backend.correction import LoopConfig, get_method, method_names
from backend.correction.pipeline import CorrectionJob
from backend.errors import ClarcError
from backend.runs import FINAL_STATUSES, LocalExecutor, RunStore, submit_sweep
from components.config_form import config_inputs
from components.plots import loss_chart

HELPS = {
    "lam": "penalty weight λ: larger removes more of the artifact's influence; too large costs clean accuracy",
    "gradient_target": "which output's gradient is penalised along the CAV (logprobs: all log-probabilities)",
    "aggregation": "how the directional derivatives over positions are combined",
    "class_specific": "penalise only the class the artifact was planted into",
    "strength": "how far clean samples are moved along the CAV (1: to the artifact samples' mean)",
    "mask_source": "where the artifact is in the images: ground-truth masks (benchmark) or concept heatmaps",
    "epochs": "passes over the training split",
    "lr": "learning rate",
    "optimizer": "optimiser of the fine-tuning",
    "batch_size": "images per step",
    "seed": "random seed (data order)",
    "trainable": "head: linear layers only (the paper's setting, fast); above_layer or all: more capacity, slower",
    "device": "auto takes the GPU when there is one",
    "mixed_precision": "bf16 autocast on the GPU (ignored on the CPU)",
    "cache_activations": "train from cached activations of the frozen layers: exact and much faster",
}
PLANTED = "planted artifact (benchmark ground truth)"

st.title("Correct")
context = current_context()
model, dataset = context.model, context.dataset
state = st.session_state

sources = {
    f"annotations: {c.name} ({c.n_artifact} artifact, {c.n_clean} clean)": c.name
    for c in store().concepts(context.dataset_id)
    if c.n_artifact >= 2 and c.n_clean >= 2
}
if dataset.planting is not None:
    sources[PLANTED] = None
if not sources:
    st.info("Annotate at least 2 artifact and 2 clean samples of a concept on **Explore** first.")
    st.stop()

s1, s2, s3 = st.columns([3, 2, 1])
source = s1.selectbox(
    "Concept labels", list(sources), key="label_source", help="the samples the CAV is fitted on and that mark artifacts"
)
methods = method_names()
method = s2.selectbox(
    "Method",
    methods,
    index=methods.index("rrclarc"),
    key="method",
    format_func=lambda m: f"{m} — {get_method(m).description}",
)
cav_kind = s3.selectbox("CAV kind", ["pattern", "svm", "ridge", "lasso", "logistic"], key="correct_cav_kind")

st.markdown("**Method**")
options = config_inputs(get_method(method).config, key=f"opt_{method}", helps=HELPS, labels={"lam": "λ (lam)"})
if not options:
    st.caption("No knobs: this method needs no training.")
with st.expander("Training loop", expanded=False):
    loop_values = config_inputs(LoopConfig, key="loop", helps=HELPS)
if loop_values.get("device") == "cuda" and not torch.cuda.is_available():
    st.warning("No GPU on this machine: the run would fail; choose auto or cpu.")


def _job() -> CorrectionJob:
    concept = sources[source]
    labels = None
    if concept is not None:
        labels = str(concept_labels_file(store().labels(context.dataset_id, concept)))
    return CorrectionJob(
        out="pending",
        checkpoint=str(model.path),
        dataset=context.spec,
        method=method,
        method_options=options,
        loop=LoopConfig(**loop_values),
        layer=context.layer,
        cav_kind=cav_kind,
        labels=labels,
    )


b1, b2, b3 = st.columns([1, 2, 1])
if b1.button("Launch run", type="primary", icon=":material/play_arrow:"):
    try:
        run_id = LocalExecutor().submit(_job(), name=f"{method} {cav_kind}")
    except ClarcError as exc:
        st.error(f"Not launched: {exc}")
    else:
        state["watch_run"] = run_id
        st.toast(f"Launched {run_id}", icon=":material/rocket_launch:")
takes_lam = "lam" in {f.name for f in fields(get_method(method).config)}
lams_text = b2.text_input(
    "λ values for a sweep",
    "1e3, 1e4, 1e5, 1e6",
    key="sweep_lams",
    disabled=not takes_lam,
    help="comma-separated; each value is one run, queued on the free slots",
)
if b3.button("Launch sweep", icon=":material/stacked_line_chart:", disabled=not takes_lam):
    try:
        lams = [float(v) for v in lams_text.replace(";", ",").split(",") if v.strip()]
        sweep_id, run_ids = submit_sweep(LocalExecutor(), _job(), lams)
    except ValueError:
        st.error(f"Not launched: {lams_text!r} is not a comma-separated list of numbers")
    except ClarcError as exc:
        st.error(f"Not launched: {exc}")
    else:
        state["watch_run"] = run_ids[0]
        st.toast(f"Launched sweep {sweep_id} with {len(run_ids)} runs", icon=":material/rocket_launch:")

st.divider()
runs_store = RunStore()
active = any(r.status not in FINAL_STATUSES for r in runs_store.list())


@st.fragment(run_every=1.0 if active else None)
def run_monitor() -> None:
    """The run list and the watched run's progress; polls the store every second while anything runs."""
    executor_store = LocalExecutor().store  # creating the executor marks runs whose worker died as failed
    records = executor_store.list()[::-1]  # newest first
    if not records:
        st.caption("No runs yet.")
        return
    st.subheader("Runs")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "run": r.id,
                    "name": r.name,
                    "status": r.status,
                    "progress": r.progress,
                    "device": r.device,
                    "dataset": r.config.get("dataset"),
                    "created": time.strftime("%H:%M:%S", time.localtime(r.created)),
                    "message": r.error or r.message,
                }
                for r in records
            ]
        ),
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "status": st.column_config.TextColumn("status", width="medium"),
            "message": st.column_config.TextColumn("message", width="medium"),
        },
        key="run_table",
    )
    ids = [r.id for r in records]
    if state.get("watch_run") not in ids:
        state["watch_run"] = ids[0]
    run_id = st.selectbox(
        "Watch run", ids, key="watch_run", format_func=lambda i: f"{i} · {executor_store.get(i).name}"
    )
    record = executor_store.get(run_id)
    st.progress(record.progress, text=f"{record.status} · {record.message}")
    if record.history:
        st.plotly_chart(loss_chart(record.history), key="loss_chart")
    if record.status not in FINAL_STATUSES:
        if st.button("Cancel run", icon=":material/stop:", key="cancel_run"):
            st.toast(f"{run_id}: {executor_store.request_cancel(run_id)}", icon=":material/stop:")
    elif record.status == "succeeded":
        st.success(f"{run_id} finished; compare before and after on **Results**.")
        if st.button("Open results", icon=":material/compare:", key="open_results"):
            state["results_run"] = run_id
            st.switch_page("results.py")
    elif record.status == "failed":
        st.error(record.error or "failed")
        if record.traceback:
            with st.expander("Traceback"):
                st.code(record.traceback)
    still_active = any(r.status not in FINAL_STATUSES for r in records)
    if active and not still_active:
        st.rerun(scope="app")  # everything finished: stop polling
    if not active and still_active:
        st.rerun(scope="app")  # something started elsewhere: start polling


run_monitor()
