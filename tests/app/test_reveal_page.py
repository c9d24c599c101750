"""The Reveal page through AppTest: discovery runs in the background while the page shows its progress, the
candidates come as cards, and one click sends a candidate's images to Explore's checklist, ticked, under a new
concept whose labels are saved."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from backend.data import open_dataset
from backend.storage import AnnotationStore
from tests.app.test_pages import APP, _run

SPEC = "synthderm?n_train=200&n_val=30&n_test=30"


def _until_done(at: AppTest, seconds: float = 120) -> AppTest:
    """Rerun the page until the background discovery has finished (its cards are shown)."""
    deadline = time.monotonic() + seconds
    while not any(s.value == "Candidates" for s in at.subheader):
        assert time.monotonic() < deadline, "discovery did not finish"
        time.sleep(0.5)
        _run(at)
    return at


def test_reveal_to_explore_checklist_to_saved_labels(workspace):
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["dataset_spec"] = SPEC
    _run(at)
    at.switch_page("reveal.py")
    _run(at)
    assert at.title[0].value == "Reveal candidate shortcuts"
    at.selectbox(key="reveal_class").set_value("melanoma")
    _run(at)
    started = time.monotonic()
    _until_done(at)
    assert time.monotonic() - started < 120
    cards = [b for b in at.button if b.label == "Review as concept"]
    assert 1 <= len(cards) <= 6
    assert len(at.get("plotly_chart")) == 1  # the clusters' embedding
    assert at.selectbox(key="reveal_atlas_channel") is not None
    at.selectbox(key="reveal_class").set_value("nevus")  # another class: its own background job
    _run(at)
    at.selectbox(key="reveal_class").set_value("melanoma")  # back: the finished job is shown at once
    _run(at)
    assert any(s.value == "Candidates" for s in at.subheader)

    first = next(b for b in at.button if b.label == "Review as concept")
    first.click()
    _run(at)  # the click's rerun switches to Explore
    assert at.title[0].value == "Explore and annotate"
    at.switch_page("explore.py")  # AppTest reruns the page it was told; the browser follows the switch by itself
    _run(at)
    review = next(s.value for s in at.subheader if s.value.startswith("Review: "))
    assert review.startswith("Review: melanoma · ")
    concept = at.session_state["active_concept"]
    assert concept.startswith("melanoma ")
    save = next(b for b in at.button if b.label.startswith("Save ") and b.label.endswith(" as artifact"))
    n = int(save.label.split()[1])
    assert n >= 5  # every proposed image starts ticked
    save.click()
    _run(at)
    dataset_id = open_dataset(SPEC, workspace).dataset_id
    stored = AnnotationStore(workspace).labels(dataset_id, concept)
    assert len(stored) == n and set(stored.values()) == {1}
    at.button(key="explore_review_close").click()
    _run(at)
    assert not any(s.value.startswith("Review: ") for s in at.subheader)
