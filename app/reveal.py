"""Reveal: shortcuts found before anyone annotated them. The training images of a class are explained at the Setup
layer and their explanations clustered (SpRAy) and read channel by channel (a concept atlas); the groups whose
reasons differ most from the rest of the class come first as candidate cards. One click sends a candidate's images to
Explore's checklist as a new concept. This page's session keys start with `reveal_`."""

from __future__ import annotations

import streamlit as st

from app.annotating import ACTIVE, REVIEW
from app.background import BackgroundJob, background_job, forget_job
from app.context import Context, current_context
from app.resources import EXPLORE_SPLIT, annotation_store, localization
from backend.discovery import Candidate, ClassDiscovery, RevealConfig, discover_class
from backend.models import model_fingerprint
from components.plots import cluster_scatter
from components.thumbnails import thumbnail_png

SHOWN = 6  # candidate cards shown before "Show all"
_GO_EXPLORE = "reveal_go_explore"


def render() -> None:
    if st.session_state.pop(_GO_EXPLORE, False):
        st.switch_page("explore.py")
    st.title("Reveal candidate shortcuts")
    context = current_context()
    classes = list(context.dataset.classes)
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    class_name = c1.selectbox(
        "Class",
        classes,
        key="reveal_class",
        help="whose training images are explained; a shortcut sits in the class it is a shortcut for",
    )
    c2.caption(
        f"Explains the {class_name} training images at layer **{context.layer}** (change it on Setup), clusters the "
        "explanations and reads the channels the class leans on. Groups whose reasons differ most from the rest of "
        "the class come first."
    )
    key = ("reveal", model_fingerprint(context.model), context.dataset_id, class_name, context.layer)
    job = background_job(key, lambda job: _discover(context, class_name, job))
    if not job.finished:
        st.fragment(run_every=0.5)(_progress)(job)
        return
    if job.error is not None:
        st.error(f"Discovery of {class_name} stopped: {job.error}")
        st.button("Start again", key="reveal_restart", on_click=forget_job, args=(key,))
        return
    found: ClassDiscovery = job.result
    _overview(found)
    _candidate_cards(context, found)
    _atlas(context, found)


def _discover(context: Context, class_name: str, job: BackgroundJob) -> ClassDiscovery:
    config = RevealConfig(layer=context.layer, split=EXPLORE_SPLIT)
    return discover_class(context.model, context.dataset, class_name, config, on_progress=job.report, cancel=job.cancel)


def _progress(job: BackgroundJob) -> None:
    """The running job's progress and a cancel button; the whole page reruns once it has finished."""
    if job.finished:
        st.rerun(scope="app")
    if job.cancel.is_set():
        label = "Cancelling… (stops before the next batch)"
    elif job.total:
        label = f"Explaining the images… {job.step} of {job.total} batches"
    else:
        label = "Starting… (loading the images)"
    st.progress(job.fraction, text=label)
    st.button("Cancel", key="reveal_cancel", on_click=job.cancel.set, disabled=job.cancel.is_set())


def _overview(found: ClassDiscovery) -> None:
    n_candidates = len(found.candidates)
    st.markdown(
        f"**{len(found.sample_ids)} images** of {found.class_name} in **{found.clusters.n_clusters} clusters** "
        f"(eigengap {found.clusters.eigengap:.3f}); **{n_candidates} candidate{'s' if n_candidates != 1 else ''}** "
        "(groups of less than half the class, ranked by d': how far their reasons are from the rest's, in standard "
        "deviations)."
    )
    figure = cluster_scatter(found.clusters.embedding, found.clusters.labels, found.sample_ids)
    st.plotly_chart(figure, key="reveal_embedding")


def _candidate_cards(context: Context, found: ClassDiscovery) -> None:
    st.subheader("Candidates")
    st.caption(
        "Over each reference image, concept-conditional LRP along the group's direction (its images' mean activation "
        "minus the rest's; a channel's own unit for a channel): red where it is, blue where it counts against."
    )
    if not found.candidates:
        st.info(
            f"No group of {found.class_name} images is explained differently from the rest: no candidate. "
            "A model without shortcuts in this class looks like this; so does a layer too early to tell."
        )
        return
    show_all = (
        st.toggle(f"Show all {len(found.candidates)}", key="reveal_show_all")
        if len(found.candidates) > SHOWN
        else False
    )
    for candidate in found.candidates if show_all else found.candidates[:SHOWN]:
        _card(context, candidate)


def _card(context: Context, candidate: Candidate) -> None:
    """A candidate: what it is, its reference images with where its direction is in them, and the review button."""
    with st.container(border=True):
        head, action = st.columns([4, 1], vertical_alignment="center")
        kind = "channel" if candidate.kind == "channel" else "cluster of explanations"
        head.markdown(
            f"**#{candidate.rank} · {candidate.key}** ({kind}) · {len(candidate.sample_ids)} images "
            f"({candidate.share:.0%} of the class) · d' {candidate.score:.2f}"
        )
        action.button(
            "Review as concept",
            key=f"reveal_review_{candidate.key}",
            icon=":material/fact_check:",
            type="primary" if candidate.rank == 1 else "secondary",
            on_click=_send_to_explore,
            args=(context, candidate),
            help="a new concept; its images go to Explore's checklist, where you keep those that show an artifact",
        )
        vector = _one_hot(candidate.channel, len(candidate.direction)) if candidate.channel is not None else None
        _references(context, candidate.references, vector or candidate.direction)


def _references(context: Context, ids: tuple[str, ...], vector: tuple[float, ...]) -> None:
    """Reference images with the concept-conditional heatmap of `vector` over them (red: where it is)."""
    view = context.dataset.split(EXPLORE_SPLIT)
    position = {sid: i for i, sid in enumerate(view.sample_ids)}
    indices = tuple(position[sid] for sid in ids if sid in position)
    maps = localization(context.model, context.dataset, context.layer, vector, indices)
    for col, i, heatmap in zip(st.columns(max(len(indices), 1)), indices, maps):
        col.image(thumbnail_png(view.image(i), heatmap, "overlay"), caption=view.sample_ids[i].rsplit("/", 1)[-1])


def _atlas(context: Context, found: ClassDiscovery) -> None:
    st.subheader("Concept atlas")
    st.caption(
        f"The channels of {found.layer} that {found.class_name} leans on most, by their mean share of the class's "
        "relevance; each with the images whose explanations rely on it most and where in them it fires."
    )
    if not found.atlas:
        st.info("No channel carries positive relevance for this class.")
        return
    names = {a.channel: f"channel {a.channel} · {a.relevance_share:.1%} of the relevance" for a in found.atlas}
    channel = st.selectbox("Channel", list(names), format_func=names.get, key="reveal_atlas_channel")
    chosen = next(a for a in found.atlas if a.channel == channel)
    width = len(found.candidates[0].direction) if found.candidates else _channels(context, found)
    vector = _one_hot(channel, width)
    st.caption("Most relevant")
    _references(context, chosen.top_relevant, vector)
    st.caption("Most activating")
    _references(context, chosen.top_activating, vector)


def _channels(context: Context, found: ClassDiscovery) -> int:
    return next(info.shape[0] for info in context.model.layers() if info.name == found.layer)


def _one_hot(channel: int, width: int) -> tuple[float, ...]:
    return tuple(float(c == channel) for c in range(width))


def _send_to_explore(context: Context, candidate: Candidate) -> None:
    """Make the candidate a new concept (a free name) and hand its images to Explore's checklist."""
    names = {c.name for c in annotation_store().concepts(context.dataset_id)}
    base = f"{candidate.class_name} {candidate.key}"
    name = next(n for n in (base, *(f"{base} ({k})" for k in range(2, 1000))) if n not in names)
    st.session_state[ACTIVE] = name
    st.session_state.pop("explore_review_concept", None)  # the checklist's name field starts from the concept
    st.session_state[REVIEW] = {"concept": name, "title": candidate.title, "sample_ids": list(candidate.sample_ids)}
    st.session_state[_GO_EXPLORE] = True  # st.switch_page cannot run in a callback: render() does it


if __name__ == "__main__":
    render()
