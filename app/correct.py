"""Correct: choose a method and its knobs, launch a run or a λ sweep through the run store, and watch it: progress,
loss curves and status update by themselves; cancel any time. Runs live in worker processes, not in the page.
This page's session keys start with `correct_`."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
import torch

from app.context import Context, current_context
from app.resources import annotation_store, cav_library, executor
from backend.concepts import cav_kinds, write_concept_labels
from backend.correction import LoopConfig, get_method, method_names
from backend.errors import ClarcError
from backend.evaluation import AttackConfig
from backend.runs import FINAL_STATUSES, ConceptSpec, CorrectionJob, run_name, submit_sweep
from components.config_form import config_inputs
from components.plots import loss_chart

PLANTED = "planted artifact (benchmark ground truth)"


FIT = "fit"  # the CAV choice "fit one from annotations when the run starts"


def render() -> None:
    st.title("Correct")
    context = current_context()
    sources = {
        f"annotations: {c.name} ({c.n_artifact} artifact, {c.n_clean} clean)": c.name
        for c in annotation_store().concepts(context.dataset_id)
        if c.n_artifact >= 2
    }
    if context.dataset.planting is not None:
        sources[PLANTED] = None
    saved = {c.id: c for c in cav_library().list(dataset_id=context.dataset_id, model=context.model)}
    if not sources and not saved:
        st.info(
            "Annotate at least 2 training samples that show an artifact on **Explore**, or save a CAV on **Concepts**."
        )
        st.stop()
    job, method = _job_form(context, sources, saved)
    _launchers(job, method)
    st.divider()
    active = any(r.status not in FINAL_STATUSES for r in executor().store.list())
    st.fragment(run_every=1.0 if active else None)(_run_monitor)(active)


def _job_form(context: Context, sources: dict[str, str | None], saved: dict):
    """The CAV, method and every knob; returns a function that builds the job, and the method."""
    choices = list(saved) + ([FIT] if sources else [])
    c1, c2 = st.columns([3, 2])
    choice = c1.selectbox(
        "CAV",
        choices,
        key="correct_cav",
        format_func=lambda c: "fit one from annotations when the run starts" if c == FIT else _describe(saved[c]),
        help="a CAV saved on Concepts (what you inspected there) or one fitted for the run with the same defaults",
    )
    methods = method_names()
    method = c2.selectbox(
        "Method",
        methods,
        index=methods.index("rrclarc"),
        key="correct_method",
        format_func=lambda m: f"{m} — {get_method(m).description}",
    )
    classes = list(context.dataset.classes)
    s1, s2, s3 = st.columns([3, 1, 2])
    if choice == FIT:
        source = s1.selectbox(
            "Concept labels",
            list(sources),
            key="correct_label_source",
            help="the training samples that show the artifact (the CAV is fitted on them)",
        )
        concept, cav_kind = sources[source], s2.selectbox("CAV kind", list(cav_kinds()), key="correct_cav_kind")
    else:
        concept, cav_kind = saved[choice].concept, saved[choice].kind
        s1.caption(f"Annotations of “{concept}” mark the artifact's training and test samples, where there are any.")
    default_class = saved[choice].attacked_class if choice != FIT else None
    attacked = s3.selectbox(
        "Attacked class",
        [None, *classes],
        key=f"correct_attacked_class_{default_class}",  # a new box when the default's label changes (see Concepts)
        format_func=lambda c: c or (f"the CAV's ({default_class})" if default_class else "inferred from the labels"),
        help="the class the artifact is tied to (TCAV follows its logit)",
    )
    st.markdown("**Method**")
    rank = st.number_input(
        "Directions of the concept (rank)",
        min_value=1,
        max_value=16,
        value=1,
        key="correct_rank",
        help="1: the CAV alone. More: the CAV plus the leading directions of the artifact's activation change, "
        "penalised together by RR-ClArC (a shortcut spread over several directions; see the CAV's coverage on "
        "Concepts). Compare on Results: more directions do not always close more of the gap.",
    )
    options = config_inputs(get_method(method).config, key=f"correct_opt_{method}")
    more = _more_concepts(context, saved, choice, method)
    if not options:
        st.caption("No knobs: this method needs no training.")
    with st.expander("Training loop", expanded=False):
        loop_values = config_inputs(LoopConfig, key="correct_loop")
    with st.expander("Attacked test images", expanded=False):
        st.caption(
            "How the accuracy with the artifact is measured: the planted artifact on the benchmark; on your own data "
            "the artifact cut from the annotated training images and pasted into every test image, or your own "
            "attacked copy of the test images."
        )
        attack_values = config_inputs(AttackConfig, key="correct_attack", columns=2)
    if loop_values.get("device") == "cuda" and not torch.cuda.is_available():
        st.warning("No GPU on this machine: the run would fail; choose auto or cpu.")

    def job() -> CorrectionJob:
        labels = annotation_store().labels(context.dataset_id, concept) if concept else {}
        return CorrectionJob(
            out="pending",
            checkpoint=str(context.model.path),
            dataset=context.spec,
            method=method,
            method_options=options,
            loop=LoopConfig(**loop_values),
            concepts=(
                ConceptSpec(
                    cav=None if choice == FIT else choice,
                    labels=str(write_concept_labels(labels)) if labels else None,
                    concept=concept,
                    attacked_class=attacked,
                    rank=int(rank),
                ),
                *(extra() for extra in more),
            ),
            layer=context.layer,
            cav_kind=cav_kind,
            attack=AttackConfig(**attack_values),
        )

    return job, method


def _more_concepts(context: Context, saved: dict, choice: str, method: str) -> list:
    """Further saved CAVs corrected in the same run, each with its own λ (methods that have one) and, optionally,
    the user's attacked copy of the test images for its artifact; returns builders of their `ConceptSpec`s."""
    others = [c for c in saved if c != choice]
    if not others:
        return []
    chosen = st.multiselect(
        "More concepts in the same run",
        others,
        key="correct_more_concepts",
        format_func=lambda c: _describe(saved[c]),
        help="several shortcuts at once: each saved CAV (same layer) gets its own penalty and its own figures "
        "before and after",
    )
    default_lam = get_method(method).default_penalty_weight
    builders = []
    for cav_id in chosen:
        record = saved[cav_id]
        c1, c2 = st.columns([1, 3])
        lam = c1.number_input(
            f"λ for {record.name}",
            value=float(default_lam) if default_lam is not None else 0.0,
            min_value=0.0,
            format="%g",
            key=f"correct_more_lam_{cav_id}",
            disabled=default_lam is None,
        )
        copy_spec = c2.text_input(
            f"Attacked test images for {record.name} (optional dataset spec)",
            key=f"correct_more_attacked_{cav_id}",
            help="your own copy of the test images with this artifact in them, paired by file name; without it the "
            "artifact is transplanted from its annotated training images",
        )

        def build(cav_id=cav_id, record=record, lam=lam, copy_spec=copy_spec) -> ConceptSpec:
            labels = annotation_store().labels(context.dataset_id, record.concept)
            return ConceptSpec(
                cav=cav_id,
                labels=str(write_concept_labels(labels)) if labels else None,
                lam=lam if default_lam is not None else None,
                attacked_dataset=copy_spec.strip() or None,
            )

        builders.append(build)
    return builders


def _describe(record) -> str:
    scope = "attacked class" if record.scope == "attacked_class" else "all classes"
    return (
        f"{record.name} · {record.concept} · {record.kind} in {record.layer} ({record.pooling}) · samples of the "
        f"{scope} · {record.attacked_class}"
    )


def _launchers(job, method: str) -> None:
    state = st.session_state
    b1, b2, b3 = st.columns([1, 2, 1])
    if b1.button("Launch run", type="primary", icon=":material/play_arrow:"):
        try:
            built = job()
            run_id = executor().submit(built, name=run_name(built))
        except ClarcError as exc:
            st.error(f"Not launched: {exc}")
        else:
            state["correct_watch_run"] = run_id
            st.toast(f"Launched {run_id}", icon=":material/rocket_launch:")
    takes_lam = get_method(method).penalty_weight is not None
    lams_text = b2.text_input(
        "λ values for a sweep",
        "1e3, 1e4, 1e5, 1e6",
        key="correct_sweep_lams",
        disabled=not takes_lam,
        help="comma-separated; each value is one run, queued on the free slots",
    )
    if b3.button("Launch sweep", icon=":material/stacked_line_chart:", disabled=not takes_lam):
        try:
            lams = [float(v) for v in lams_text.replace(";", ",").split(",") if v.strip()]
            sweep_id, run_ids = submit_sweep(executor(), job(), lams)
        except ValueError:
            st.error(f"Not launched: {lams_text!r} is not a comma-separated list of numbers")
        except ClarcError as exc:
            st.error(f"Not launched: {exc}")
        else:
            state["correct_watch_run"] = run_ids[0]
            st.toast(f"Launched sweep {sweep_id} with {len(run_ids)} runs", icon=":material/rocket_launch:")


def _run_monitor(active: bool) -> None:
    """The run list and the watched run's progress; polls the store every second while anything runs."""
    state = st.session_state
    runs = executor()
    records = runs.store.list()[::-1]  # newest first
    if any(r.looks_dead(time.time()) for r in records):
        runs.recover()  # a worker stopped beating: mark its run failed and start what waited for its slot
        records = runs.store.list()[::-1]
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
        key="correct_run_table",
    )
    by_id = {r.id: r for r in records}
    if state.get("correct_watch_run") not in by_id:
        state["correct_watch_run"] = records[0].id
    run_id = st.selectbox(
        "Watch run", list(by_id), key="correct_watch_run", format_func=lambda i: f"{i} · {by_id[i].name}"
    )
    record = runs.store.get(run_id)  # the list leaves out the metric history; the watched run needs it
    text = f"{record.status} · {record.message}" if record.message else record.status
    st.progress(record.progress, text=text)
    if record.history:
        st.plotly_chart(loss_chart(record.history), key="correct_loss_chart")
    if record.status not in FINAL_STATUSES:
        if st.button("Cancel run", icon=":material/stop:", key="correct_cancel"):
            st.toast(f"{run_id}: {runs.store.request_cancel(run_id)}", icon=":material/stop:")
    elif record.status == "succeeded":
        st.success(f"{run_id} finished; compare before and after on **Results**.")
        if st.button("Open results", icon=":material/compare:", key="correct_open_results"):
            state["results_run"] = run_id
            st.switch_page("results.py")
    elif record.status == "failed":
        st.error(record.error or "failed")
        if record.traceback:
            with st.expander("Traceback"):
                st.code(record.traceback)
    still_active = any(r.status not in FINAL_STATUSES for r in records)
    if active != still_active:
        st.rerun(scope="app")  # everything finished: stop polling; or something started elsewhere: start polling


if __name__ == "__main__":
    render()
