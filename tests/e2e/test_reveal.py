"""Reveal in a real browser: a candidate shortcut found without annotations becomes a concept whose images a user
reviews in Explore's checklist and saves as labels. Writes `docs/screenshots/9-reveal.png`."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from tests.e2e.test_dashboard import (
    choose,
    chromium_page,
    click,
    rerun,
    screenshot,
    stored_labels,
    streamlit_server,
    title,
    wait_idle,
)

SPEC = "synthderm?n_train=400&n_val=30&n_test=30"  # 140 melanomas, 42 with a planted skin marker


@pytest.mark.slow
def test_reveal_candidate_to_concept_to_saved_labels(tmp_path):
    from playwright.sync_api import expect

    from backend.data import open_dataset

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    train = open_dataset(SPEC, workspace).split("train")
    planted = {sid for sid, flag in zip(train.sample_ids, train.has_artifact) if flag}
    with chromium_page() as page, streamlit_server(workspace, tmp_path / "streamlit.log") as (url, _):
        try:
            page.goto(url + "reveal?" + urllib.parse.urlencode({"dataset_spec": SPEC}))
            title(page, "Reveal").wait_for(timeout=120_000)
            choose(page, "Class", "melanoma")
            expect(page.get_by_role("heading", name="Candidates", exact=True)).to_be_visible(timeout=120_000)
            wait_idle(page)
            cards = page.get_by_role("button", name="Review as concept")
            assert 1 <= cards.count() <= 6
            expect(page.get_by_role("heading", name="Concept atlas", exact=True)).to_be_visible()
            screenshot(page, "9-reveal.png")

            header = page.get_by_text(re.compile(r"^#1 · ")).inner_text()
            rerun(page, lambda: cards.first.click(), settle=True)  # the click's rerun switches to Explore
            title(page, "Explore").wait_for(timeout=120_000)
            review = page.get_by_role("heading", name=re.compile(r"^Review: melanoma · "))
            expect(review).to_be_visible()
            assert review.inner_text().split(" · ", 1)[1] in header
            save = page.get_by_role("button", name=re.compile(r"^Save \d+ as artifact$"))
            n = int(re.search(r"Save (\d+) as artifact", save.inner_text()).group(1))
            rerun(page, save.click)
            concept = page.get_by_role("textbox", name="Concept", exact=True).input_value()
            dataset_id = open_dataset(SPEC, workspace).dataset_id
            stored = stored_labels(workspace, dataset_id, concept)
            assert len(stored) == n and set(stored.values()) == {1}
            print(f"saved {n} labels under {concept!r}; {len(planted & set(stored)) / n:.0%} are planted markers")
            click(page, "Close the review")
            expect(review).to_have_count(0)
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"\nthe browser's last view: {tmp_path / 'failure.png'}")
            raise
