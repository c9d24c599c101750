"""A split's analysis in the background: large splits (an ISIC folder at 224 pixels) get their predictions,
activations, heatmaps and outlier scores from an analysis job in the run store's worker processes, so a page shows
the job's progress and works with what is ready instead of blocking. Small splits (the embedded benchmark) are
analysed inline in a few seconds, as before."""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from app.context import Context
from app.resources import executor
from backend.concepts import activations_complete
from backend.data import ClarcDataset
from backend.runs import ANALYSIS_KIND, FINAL_STATUSES, AnalysisJob, RunRecord

__all__ = ["INLINE_PIXELS", "activations_ready", "analysis_job", "analysis_panel", "in_background", "started_analysis"]

# A split with more images x pixels than this (the embedded benchmark's 3,000 training images at 64 px: 12 M) goes
# to the background: measured here, a forward pass at 64 px takes about 1 ms per image, at 224 px about 12 times more.
INLINE_PIXELS = 16_000_000


def in_background(dataset: ClarcDataset, split: str) -> bool:
    """Whether the split is large enough that its analysis runs as a background job."""
    return len(dataset.split(split)) * dataset.image_size**2 > INLINE_PIXELS


def analysis_job(context: Context, split: str) -> AnalysisJob:
    """The job that analyses `split` for the page: predictions, the chosen layer's activations, heatmaps, outliers."""
    return AnalysisJob(checkpoint=context.checkpoint, dataset=context.spec, split=split, layers=(context.layer,))


def activations_ready(context: Context, layer: str, pooling: str, split: str = "train") -> bool:
    """Whether the split's activations of (layer, pooling) can be read now. A large split's are collected by an
    analysis job, whose progress shows here until they are in (False: the caller waits); a small split's are
    collected inline by whoever asks."""
    view = context.dataset.split(split)
    if not in_background(context.dataset, split):
        return True
    if activations_complete(context.model, view, context.dataset.dataset_id, layer, pooling):
        return True
    job = AnalysisJob(
        checkpoint=context.checkpoint,
        dataset=context.spec,
        split=split,
        layers=(layer,),
        full_maps=pooling == "none",
        heatmaps=False,
    )
    analysis_panel(
        job,
        started_analysis(job),
        0,
        len(view),
        lambda: 0,
        note=f"The CAV is fitted when the activations of {layer} are in.",
    )
    return False


def _latest(job: AnalysisJob) -> RunRecord | None:
    config = job.to_dict()
    same = [r for r in executor().store.list(kinds=(ANALYSIS_KIND,)) if r.config == config]
    return same[-1] if same else None


def started_analysis(job: AnalysisJob) -> RunRecord:
    """The job's newest run if it is active, failed or cancelled (a failed or cancelled one waits for the user);
    otherwise (none yet, or one that succeeded but whose results are gone) a new run."""
    record = _latest(job)
    if record is None or record.status == "succeeded":
        record = executor().store.get(executor().submit_analysis(job))
    return record


def _restart(job: AnalysisJob) -> None:
    executor().submit_analysis(job)


def analysis_panel(
    job: AnalysisJob,
    record: RunRecord,
    ready: int,
    total: int,
    count_ready: Callable[[], int],
    note: str | None = None,
    key: str = "analysis",
) -> None:
    """The job's state: progress and Cancel while it runs (the page reruns when every prediction or the whole job is
        done), its error or cancellation with a button to start again. `ready` of `total` images had predictions when
        the page rendered; `count_ready()` says how many have them now. Explore's grid shows the images predicted so
    far; another page says in `note` what it shows once the job is done. `key` prefixes the widgets' keys, so a
    second panel can show beside the split's own."""
    what = f"the {job.split} split ({total:,} images)"
    if record.status == "failed":
        st.error(f"The analysis of {what} failed: {record.error}")
        st.button("Try again", key=f"{key}_restart", icon=":material/refresh:", on_click=_restart, args=(job,))
        return
    if record.status == "cancelled":
        if job.embeddings and ready == total:
            kept = "nothing else is lost: starting it again makes the map"
        elif ready == total:
            kept = "its predictions are kept, and the heatmaps made so far"
        else:
            kept = "a pass cut short is not resumed: starting it again predicts from the first image"
        st.info(f"The analysis of {what} was cancelled; {kept}.")
        st.button("Start it again", key=f"{key}_restart", icon=":material/play_arrow:", on_click=_restart, args=(job,))
        return
    st.fragment(run_every=1.0)(_watch)(what, record.id, ready, total, count_ready, note, key)


def _watch(
    what: str, run_id: str, ready: int, total: int, count_ready: Callable[[], int], note: str | None, key: str
) -> None:
    runs = executor()
    record = runs.store.get(run_id)
    if record.looks_dead(time.time()):
        runs.recover()
        record = runs.store.get(run_id)
    if record.status in FINAL_STATUSES or (ready < total and count_ready() >= total):
        st.rerun(scope="app")  # done, or every prediction is in: the page can offer everything that needs them
    with st.container(border=True):
        message = record.message if record.status == "running" else "waiting for a worker process…"
        st.progress(min(max(record.progress, 0.0), 1.0), text=f"Analysing {what}: {message}")
        c1, c2 = st.columns([1, 4], vertical_alignment="center")
        c1.button("Cancel", key=f"{key}_cancel", icon=":material/stop:", on_click=runs.cancel, args=(run_id,))
        on_grid = note is None
        shown = f"The grid shows the {ready:,} images predicted when the page loaded. " if 0 < ready < total else ""
        note = note or "Sorting by heatmap outlier score comes when the heatmaps are done."
        c2.caption(
            f"{shown if on_grid else ''}It runs in a worker process: keep working, leave the page or close the "
            f"browser. {note}"
        )
        if on_grid and ready < total and c2.button("Show the images predicted since", key=f"{key}_refresh"):
            st.rerun(scope="app")
