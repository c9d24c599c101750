"""The dashboard in a real browser, as a user drives it: `streamlit run app/main.py` on a fresh workspace, then
Setup -> Explore -> Concepts -> Correct -> Results with Debian's chromium through Playwright.

What it proves:
- the app starts and renders its first page (Setup with its test accuracy) within 20 s of launching the server;
- labels given in the Explore grid reach the workspace's annotation store and survive a browser reload;
- a CAV fitted from those labels shows its metrics; a correction run launched from Correct finishes and the page
  shows it without a reload or a click (it polls the run store by itself);
- Results shows the before/after figures of the run, and its download is exactly the checkpoint the run wrote;
- warm interactions are fast: switching pages (median <= 1 s) and paging the grid with freshly computed heatmaps
  (max <= 3 s).

It also writes the README's screenshots (`docs/screenshots/1-setup.png` ... `5-results.png`) and the measured
latencies (`docs/screenshots/latency.json`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMALL_SPEC

SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONCEPT = "skin marker"
PAGE_SIZE = 24  # tiles per page of the Explore grid (app/explore.py)
GRID_IMAGES = ".st-key-explore_grid img"  # the tiles of Explore's grid (st.grid keyed "explore_grid")
TITLES = {  # sidebar link -> the page's title
    "Setup": "ClArC Studio",
    "Explore": "Explore and annotate",
    "Concepts": "Concepts",
    "Correct": "Correct",
    "Results": "Results",
}
FIRST_START_LIMIT_S = 20.0
PAGE_SWITCH_MEDIAN_LIMIT_S = 1.0
GRID_PAGE_MAX_LIMIT_S = 3.0

# Counts finished script runs: Streamlit flips `data-test-script-state` on the app's root from "running" to
# "notRunning" at the end of every run, so an action's rerun is seen even when it is over within one poll.
COUNT_RUNS = """
window.__clarcRuns = 0;
new MutationObserver((records) => {
  for (const r of records) {
    if (r.oldValue === "running" && r.target.getAttribute("data-test-script-state") === "notRunning") {
      window.__clarcRuns += 1;
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ["data-test-script-state"]});
"""
ALL_IMAGES_LOADED = "() => [...document.querySelectorAll('img')].every((i) => i.complete && i.naturalWidth > 0)"
NEW_GRID_LOADED = """([selector, n, old]) => {
  const imgs = [...document.querySelectorAll(selector)];
  return imgs.length === n && imgs.every((i) => !old.includes(i.src) && i.complete && i.naturalWidth > 0);
}"""


# --- the server and the browser ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def streamlit_server(workspace: Path, log_path: Path) -> Iterator[tuple[str, float]]:
    """`streamlit run app/main.py` on a free port with CLARC_WORKSPACE=workspace; yields (url, launch time).
    The server is always stopped; when the body fails, the server's log is printed."""
    port = _free_port()
    env = dict(os.environ, CLARC_WORKSPACE=str(workspace))
    with open(log_path, "w") as log:
        launched = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/main.py"]
            + ["--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so _stop reaches everything it started
        )
        try:
            url = f"http://localhost:{port}/"
            _wait_healthy(url, process, log_path)
            yield url, launched
        except BaseException:
            print(f"\n----- streamlit server log ({log_path}) -----\n{log_path.read_text()}\n-----", flush=True)
            raise
        finally:
            _stop(process)


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the streamlit server exited with code {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the streamlit server did not answer within {timeout:.0f} s")


@contextmanager
def chromium_page() -> Iterator:
    """A Playwright page in Debian's chromium (Playwright's own browser download is not used)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"the browser test needs the Python package playwright (pip install playwright): {exc}")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("the browser test needs chromium on the PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.set_default_timeout(60_000)
            page.add_init_script(COUNT_RUNS)
            yield page
        finally:
            browser.close()


# --- driving Streamlit ---------------------------------------------------------------------------------------


def wait_idle(page, timeout: float = 120_000) -> None:
    """Until no script runs: the app's root says notRunning and the top-right status widget is gone."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout)


def rerun(page, action: Callable[[], object], timeout: float = 120_000) -> None:
    """Do `action` (a widget interaction) and wait until the rerun it triggers has finished."""
    before = page.evaluate("window.__clarcRuns")
    action()
    page.wait_for_function(f"window.__clarcRuns > {before}", timeout=timeout)
    wait_idle(page, timeout)


def title(page, name: str):
    return page.get_by_role("heading", name=TITLES[name], exact=True, level=1)


def goto(page, name: str) -> None:
    """Open a page through its sidebar link and wait until it has rendered."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    title(page, name).wait_for(timeout=120_000)
    wait_idle(page)


def choose(page, label: str, prefix: str) -> None:
    """Pick the option starting with `prefix` in the select box `label` (nothing to do when it is chosen: choosing
    the current option again triggers no rerun)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    if box.input_value().startswith(prefix):
        return
    box.click()
    rerun(page, lambda: page.get_by_role("option", name=re.compile("^" + re.escape(prefix))).click())


def choose_dataset(page, spec: str) -> None:
    box = page.get_by_role("textbox", name="Dataset", exact=True)
    if box.input_value() != spec:
        box.fill(spec)
        rerun(page, lambda: box.press("Enter"))
        box.blur()
    page.get_by_role("heading", name="Test accuracy").wait_for()


def key_class(key: str) -> str:
    """The CSS class Streamlit gives an element with widget key `key` (characters outside [a-zA-Z0-9_-] become -)."""
    return ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key)


def tick(page, sample_id: str) -> None:
    """Tick the select box of a tile of the Explore grid (its widget key is explore_pick_<sample id>)."""
    rerun(page, lambda: page.locator(f"{key_class('explore_pick_' + sample_id)} label").click())


def grid_page(page, number: int) -> None:
    rerun(page, lambda: page.get_by_role("button", name=f"Page {number}", exact=True).click())


def click(page, button: str) -> None:
    rerun(page, lambda: page.get_by_role("button", name=button, exact=True).click())


def labelled_caption(page) -> str:
    return page.get_by_text(re.compile(r"training images match")).inner_text()


def screenshot(page, name: str) -> None:
    """A full-page screenshot of the settled page. Streamlit scrolls inside its main area, so the viewport is made
    as tall as that area for the shot."""
    wait_idle(page)
    page.locator('[data-testid="stToast"]').first.wait_for(state="hidden", timeout=15_000)
    page.wait_for_function(ALL_IMAGES_LOADED)
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    try:
        page.wait_for_timeout(500)  # let charts and images lay out at the new size
        page.wait_for_function(ALL_IMAGES_LOADED)
        page.screenshot(path=str(SHOTS / name), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)


# --- the test ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dashboard_end_to_end(tmp_path):
    from playwright.sync_api import expect

    from backend.attribution import view_batch
    from backend.data import open_dataset
    from backend.models import load_checkpoint
    from backend.runs import RunStore
    from backend.storage import AnnotationStore

    SHOTS.mkdir(parents=True, exist_ok=True)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    figures: dict = {}
    began = time.perf_counter()

    def milestone(what: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {what}", flush=True)

    # The samples to label: the planted skin markers of grid pages 1, 4 and 5 are the artifacts; the rest of
    # page 1 is clean. Pages 2 and 3 stay unseen and page 4 is only seen without heatmaps, for the grid timing.
    dataset = open_dataset(SMALL_SPEC, workspace)
    train = dataset.split("train")
    planted = {int(i) for i in train.has_artifact.nonzero()[0]}
    marked = {p: [train.sample_ids[i] for i in sorted(planted) if i // PAGE_SIZE + 1 == p] for p in (1, 4, 5)}
    artifact_ids = [sid for ids in marked.values() for sid in ids]
    clean_ids = [sid for sid in train.sample_ids[:PAGE_SIZE] if sid not in marked[1]]
    assert marked[1] and len(artifact_ids) >= 6, f"the benchmark's planting changed: {marked}"

    with chromium_page() as page, streamlit_server(workspace, tmp_path / "streamlit.log") as (url, launched):
        try:
            # 1. Setup: the first page, timed from launching the server.
            page.goto(url)
            page.get_by_role("heading", name="Test accuracy").wait_for(timeout=120_000)
            page.locator('[data-testid="stMetric"]').filter(has_text="Clean").wait_for(timeout=120_000)
            figures["first_start_s"] = round(time.perf_counter() - launched, 2)
            wait_idle(page)
            choose_dataset(page, SMALL_SPEC)
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Test samples")).to_contain_text(
                str(len(dataset.split("test")))
            )
            screenshot(page, "1-setup.png")
            milestone("setup")

            # 2. Explore: label through the grid's bulk actions, page by page.
            goto(page, "Explore")
            assert "0 labelled" in labelled_caption(page)
            click(page, "Select page")
            for sid in marked[1]:
                tick(page, sid)  # untick: these show the marker
            click(page, "Selected → clean")
            for sid in marked[1]:
                tick(page, sid)
            click(page, "Selected → artifact")
            for number in (4, 5):
                grid_page(page, number)
                for sid in marked[number]:
                    tick(page, sid)
                click(page, "Selected → artifact")
            n_labels = len(artifact_ids) + len(clean_ids)
            assert f"{n_labels} labelled for “{CONCEPT}”" in labelled_caption(page)
            expected = dict.fromkeys(clean_ids, 0) | dict.fromkeys(artifact_ids, 1)
            assert AnnotationStore(workspace).labels(dataset.dataset_id, CONCEPT) == expected
            milestone("labels given")

            # A reload starts a new browser session: Setup's choices come back from the URL, the labels from the
            # store.
            page.reload()
            title(page, "Explore").wait_for(timeout=120_000)
            wait_idle(page)
            assert f"{n_labels} labelled for “{CONCEPT}”" in labelled_caption(page)
            for sid in train.sample_ids[:PAGE_SIZE]:  # a tile's button for the label it already has is disabled
                which = "artifact" if sid in marked[1] else "clean"
                expect(page.locator(f"{key_class(f'explore_{which}_{sid}')} button").first).to_be_disabled()
            rerun(page, lambda: page.get_by_role("radio", name="overlay").click())
            screenshot(page, "2-explore.png")
            goto(page, "Setup")
            expect(page.get_by_role("textbox", name="Dataset", exact=True)).to_have_value(SMALL_SPEC)
            goto(page, "Explore")
            milestone("reload checked")

            # Warm grid paging: heatmaps of pages never shown with heatmaps are computed for each click.
            rerun(page, lambda: page.get_by_role("radio", name="heatmap").click())
            figures["grid_page_s"] = []
            for _ in range(3):
                old = page.eval_on_selector_all(GRID_IMAGES, "imgs => imgs.map((i) => i.src)")
                start = time.perf_counter()
                page.get_by_role("button", name="Next page").click()
                page.wait_for_function(NEW_GRID_LOADED, arg=[GRID_IMAGES, PAGE_SIZE, old])
                wait_idle(page)
                figures["grid_page_s"].append(round(time.perf_counter() - start, 3))
            milestone("grid paged")

            # 3. Concepts: fit a CAV on the labels.
            goto(page, "Concepts")
            expect(page.get_by_text(f"{len(artifact_ids)} training samples annotated as showing it")).to_be_visible()
            click(page, "Fit CAV")
            auc = page.locator('[data-testid="stMetric"]').filter(has_text="Separability (AUC)")
            expect(auc).to_be_visible()
            assert float(auc.locator('[data-testid="stMetricValue"]').inner_text()) > 0.5
            screenshot(page, "3-concepts.png")
            milestone("CAV fitted")

            # 4. Correct: a short RR-ClArC run on the annotations, watched without touching the page.
            goto(page, "Correct")
            page.get_by_text("Training loop", exact=True).click()
            epochs = page.get_by_role("spinbutton", name="epochs", exact=True)
            epochs.fill("3")
            rerun(page, lambda: epochs.press("Enter"))
            choose(page, "Concept labels", f"annotations: {CONCEPT} (")
            expect(page.get_by_role("combobox", name="Method", exact=True)).to_have_value(re.compile(r"^rrclarc "))
            page.evaluate("window.__sameDocument = true")
            click(page, "Launch run")
            runs = RunStore(workspace).list()
            assert len(runs) == 1, runs
            run_id = runs[0].id
            expect(page.get_by_text(f"{run_id} finished")).to_be_visible(timeout=120_000)
            expect(page.locator('[data-testid="stProgress"]')).to_contain_text("succeeded")
            assert page.evaluate("window.__sameDocument === true"), "the page was reloaded while the run was watched"
            record = RunStore(workspace).get(run_id)
            assert record.status == "succeeded" and record.config["method"] == "rrclarc"
            assert record.config["loop"]["epochs"] == 3 and record.config["labels"], record.config
            screenshot(page, "4-correct.png")
            milestone("run watched")

            # 5. Results: before/after figures and the corrected checkpoint to take away.
            goto(page, "Results")
            expect(page.get_by_role("heading", name="Before and after", exact=True)).to_be_visible()
            clean = page.locator('[data-testid="stMetric"]').filter(has_text="clean accuracy")
            expect(clean).to_contain_text(f"{record.result['after']['clean_acc']:.1%}")
            expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
            with page.expect_download() as download_info:
                page.get_by_role("button", name="Corrected checkpoint (.safetensors)").click()
            download = download_info.value
            downloaded = tmp_path / download.suggested_filename
            download.save_as(downloaded)
            written = Path(record.outputs["checkpoint"])
            assert downloaded.suffix == ".safetensors" and downloaded.read_bytes() == written.read_bytes()
            ours, theirs = load_checkpoint(downloaded), load_checkpoint(written)
            x, _ = view_batch(dataset.split("test", "attacked"), range(16), theirs)
            assert ours.module(x).argmax(1).tolist() == theirs.module(x).argmax(1).tolist()
            mine, run_state = ours.module.state_dict(), theirs.module.state_dict()
            assert mine.keys() == run_state.keys() and all((mine[k] == run_state[k]).all() for k in mine)
            screenshot(page, "5-results.png")
            milestone("results checked")

            # Warm page switches, every page having been rendered once.
            figures["page_switch_s"] = []
            for name in ("Setup", "Explore", "Concepts", "Correct", "Results"):
                start = time.perf_counter()
                page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
                title(page, name).wait_for()
                wait_idle(page)
                figures["page_switch_s"].append(round(time.perf_counter() - start, 3))
            milestone("pages switched")
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"\nthe browser's last view: {tmp_path / 'failure.png'}")
            raise

    latency = {
        "first_start_s": figures["first_start_s"],
        "page_switch_s": figures["page_switch_s"],
        "page_switch_median_s": round(statistics.median(figures["page_switch_s"]), 3),
        "grid_page_s": figures["grid_page_s"],
        "grid_page_max_s": max(figures["grid_page_s"]),
    }
    (SHOTS / "latency.json").write_text(json.dumps(latency, indent=2) + "\n")
    print("\nlatency:", json.dumps(latency))
    assert latency["first_start_s"] <= FIRST_START_LIMIT_S, latency
    assert latency["page_switch_median_s"] <= PAGE_SWITCH_MEDIAN_LIMIT_S, latency
    assert latency["grid_page_max_s"] <= GRID_PAGE_MAX_LIMIT_S, latency


@pytest.mark.slow
def test_own_image_folder_end_to_end(tmp_path):
    """An image folder whose artifact nobody planted (a sticker in some melanoma training images) and a model trained
    on it: annotate the stickers, fit and save a CAV, correct along it, and see the transplanted attacked accuracy,
    TCAV, R_bias, the per-class table and heatmaps before and after on Results."""
    from playwright.sync_api import expect

    from backend.bench.natural import write_folders
    from backend.concepts import read_concept_labels
    from backend.data import open_dataset
    from backend.models import save_checkpoint
    from backend.runs import RunStore
    from backend.training import TrainConfig, train_model

    workspace = tmp_path / "workspace"
    root = workspace / "lesions"
    write_folders(root, n_train=120, p=0.6)
    spec = f"folder:{root / 'images'}?size=64"
    trained = train_model(TrainConfig(dataset=spec, epochs=2, device="cpu"), workspace=workspace)
    checkpoint = save_checkpoint(trained.model.module, trained.model.meta, workspace / "models" / "folder.safetensors")
    train = open_dataset(spec, workspace).split("train")
    stickers = set(read_concept_labels(root / "labels.csv"))
    on_page = {
        p: [sid for sid in train.sample_ids[(p - 1) * PAGE_SIZE : p * PAGE_SIZE] if sid in stickers] for p in (1, 2)
    }
    assert len(on_page[1]) + len(on_page[2]) >= 4, on_page

    with chromium_page() as page, streamlit_server(workspace, tmp_path / "streamlit.log") as (url, _):
        try:
            page.goto(url + "?" + urllib.parse.urlencode({"checkpoint": str(checkpoint), "dataset_spec": spec}))
            page.get_by_role("heading", name="Test accuracy").wait_for(timeout=120_000)
            wait_idle(page)

            goto(page, "Explore")
            for number in (1, 2):
                if number > 1:
                    grid_page(page, number)
                for sid in on_page[number]:
                    tick(page, sid)
                click(page, "Selected → artifact")
            marked = on_page[1] + on_page[2]
            assert f"{len(marked)} labelled" in labelled_caption(page)

            goto(page, "Concepts")
            click(page, "Fit CAV")
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Separability (AUC)")).to_be_visible()
            click(page, "Save CAV")
            expect(page.get_by_role("combobox", name="Saved CAV", exact=True)).to_have_value(CONCEPT)

            goto(page, "Correct")
            expect(page.get_by_role("combobox", name="CAV", exact=True)).to_have_value(re.compile(f"^{CONCEPT} · "))
            page.get_by_text("Training loop", exact=True).click()
            epochs = page.get_by_role("spinbutton", name="epochs", exact=True)
            epochs.fill("2")
            rerun(page, lambda: epochs.press("Enter"))
            click(page, "Launch run")
            (run,) = RunStore(workspace).list()
            expect(page.get_by_text(f"{run.id} finished")).to_be_visible(timeout=180_000)
            record = RunStore(workspace).get(run.id)
            assert record.result["cav"]["name"] == CONCEPT and record.result["after"]["attack_source"] == "transplanted"

            goto(page, "Results")
            metrics = page.locator('[data-testid="stMetric"]')
            for label in ("attacked accuracy", "TCAV sensitivity", "R_bias (relevance on the artifact)"):
                expect(metrics.filter(has_text=label)).to_be_visible()
            expect(page.get_by_text(re.compile("Attacked images: the artifact cut from"))).to_be_visible()
            expect(page.get_by_role("heading", name="Per class", exact=True)).to_be_visible()
            expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(2)  # before/after and per class
            expect(page.get_by_role("heading", name="Heatmaps before and after", exact=True)).to_be_visible()
            expect(page.get_by_text(re.compile(r"^before → "))).not_to_have_count(0)
            screenshot(page, "6-results-own-folder.png")
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"\nthe browser's last view: {tmp_path / 'failure.png'}")
            raise
