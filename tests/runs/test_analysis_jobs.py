"""Analysis jobs: a split's predictions, activations, heatmaps, outlier scores and embeddings as a background run of
the run store, with progress, cancellation and dead-worker detection like corrections; and Explore on a split
analysed in the background renders at once, shows the job and then the grid, and its embedding the same way."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import app.analysis
from backend.attribution import split_heatmap_features, split_outlier_scores, stored_outlier_scores
from backend.concepts import cached_activations, project_embedding
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT, DEFAULT_DATASET
from backend.discovery import split_embedding
from backend.errors import ConfigError
from backend.evaluation import cached_predictions, clean_and_attacked_accuracy, predictions_so_far
from backend.models import load_checkpoint
from backend.runs import ANALYSIS_KIND, AnalysisJob, LocalExecutor, RunStore, run_analysis_job
from backend.runs.execution.worker import WORKER_NICENESS
from backend.storage import AnnotationStore
from tests.app.test_pages import APP, CONCEPT, _run
from tests.conftest import SMALL_SPEC
from tests.runs.test_runs import _wait_for


def test_a_job_reports_its_stages_in_order_and_fills_the_caches_pages_read(small_dataset):
    job = AnalysisJob(checkpoint=str(DEFAULT_CHECKPOINT), dataset=SMALL_SPEC, split="val", layers=("features.13",))
    events = []
    result = run_analysis_job(job, on_progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "predictions" and "heatmaps" in stages and stages[-1] == "outlier scores"
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    assert "of 30 images" in events[0].message
    assert set(result["seconds"]) == {"single_pass", "heatmaps", "outlier_scores"} and result["images"] == 30
    model, view = load_checkpoint(DEFAULT_CHECKPOINT), small_dataset.split("val")
    ready = predictions_so_far(model, view, small_dataset.dataset_id)
    direct = cached_predictions(model, view, small_dataset.dataset_id)
    np.testing.assert_allclose(ready.probs, direct.probs)
    stored = stored_outlier_scores(model, view, small_dataset.dataset_id, ready.predicted)
    np.testing.assert_allclose(stored, split_outlier_scores(model, view, small_dataset.dataset_id, ready.predicted))


def test_a_job_maps_the_split_last_and_stores_the_maps_a_page_reads(small_dataset):
    job = AnalysisJob(
        checkpoint=str(DEFAULT_CHECKPOINT),
        dataset=SMALL_SPEC,
        split="val",
        layers=("features.13",),
        embeddings=("activations/tsne", "heatmaps/pca"),
    )
    assert AnalysisJob.from_dict(job.to_dict()) == job
    model, view = load_checkpoint(DEFAULT_CHECKPOINT), small_dataset.split("val")
    args = (model, view, small_dataset.dataset_id, "features.13")
    assert split_embedding(*args, "activations", "tsne", stored_only=True) is None  # nothing stored yet
    events = []
    result = run_analysis_job(job, on_progress=events.append)
    assert [e.stage for e in events][-2:] == ["embeddings", "embeddings"]
    assert events[-2].message == "t-SNE of the activations of features.13 (map 1 of 2)"
    assert events[-1].message == "PCA of the heatmaps (map 2 of 2)"
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] < 1.0 and "embeddings" in result["seconds"]
    activations = np.asarray(cached_activations(model, view, small_dataset.dataset_id, "features.13", "max").values)
    stored = split_embedding(*args, "activations", "tsne", stored_only=True)
    np.testing.assert_array_equal(stored, project_embedding(activations, "tsne"))  # seeded: the same map
    heatmap_map = split_embedding(*args, "heatmaps", "pca", stored_only=True)
    features = split_heatmap_features(model, view, small_dataset.dataset_id)
    np.testing.assert_array_equal(heatmap_map, project_embedding(features, "pca"))
    assert split_embedding(*args, "heatmaps", "tsne", stored_only=True) is None  # only what was asked for
    with pytest.raises(ConfigError, match="unknown embedding"):
        AnalysisJob(checkpoint=str(DEFAULT_CHECKPOINT), dataset=SMALL_SPEC, embeddings=("activations/umap",))


def _started(executor: LocalExecutor, run_id: str, stage: str):
    def running():
        record = executor.store.get(run_id)
        assert record.status not in ("failed", "succeeded", "cancelled"), record.error
        return record if record.status == "running" and record.message.startswith(stage) else None

    return _wait_for(running, 120)


def test_an_analysis_in_a_worker_can_be_cancelled_and_is_no_correction_run(embedded_dataset):
    executor = LocalExecutor()
    job = AnalysisJob(checkpoint=str(DEFAULT_CHECKPOINT), dataset=DEFAULT_DATASET, split="train")
    run_id = executor.submit_analysis(job)
    assert executor.submit_analysis(job) == run_id  # a second visitor joins the running job
    record = _started(executor, run_id, "LRP heatmaps")
    assert record.pid != os.getpid() and 0.3 <= record.progress < 1.0
    assert os.getpriority(os.PRIO_PROCESS, record.pid) == WORKER_NICENESS  # below the pages
    autogroup = Path(f"/proc/{record.pid}/autogroup")
    if Path("/proc/self/autogroup").exists():  # the kernel shares the CPU between sessions first: lowered there too
        assert autogroup.read_text().split()[-1] == str(WORKER_NICENESS)
    executor.cancel(run_id)
    record = executor.wait([run_id], timeout=30)[0]
    assert record.status == "cancelled" and "heatmaps" in record.message
    assert record.kind == ANALYSIS_KIND
    assert run_id not in [r.id for r in executor.store.list()]  # the Runs page lists corrections only
    assert run_id in [r.id for r in executor.store.list(kinds=(ANALYSIS_KIND,))]
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    view = embedded_dataset.split("train")
    assert len(predictions_so_far(model, view, embedded_dataset.dataset_id).sample_ids) == len(view)  # kept


def test_a_killed_analysis_worker_is_marked_failed():
    executor = LocalExecutor()
    job = AnalysisJob(checkpoint=str(DEFAULT_CHECKPOINT), dataset=DEFAULT_DATASET, split="val", batch_size=8)
    run_id = executor.submit_analysis(job)
    record = _wait_for(lambda: (r := executor.store.get(run_id)).status == "running" and r.pid and r, 120)
    os.kill(record.pid, signal.SIGKILL)
    _wait_for(lambda: executor.recover() or executor.store.get(run_id).status == "failed", 30)
    record = executor.store.get(run_id)
    assert record.status == "failed" and "worker" in record.error


def test_explore_renders_while_the_analysis_runs_then_shows_the_grid(monkeypatch):
    monkeypatch.setattr(app.analysis, "INLINE_PIXELS", 0)  # analyse even this small split in the background
    spec = "synthderm?n_train=300&n_val=20&n_test=20&seed=5"
    open_dataset(spec)  # rendered once beforehand, as Setup would have
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["dataset_spec"] = spec
    _run(at)
    at.switch_page("explore.py")
    start = time.perf_counter()
    _run(at)
    assert time.perf_counter() - start < 5  # the page does not wait for the analysis
    assert "analysis_cancel" in [b.key for b in at.button]

    def grid_shown():
        _run(at)
        return "Select page" in [b.label for b in at.button]

    _wait_for(grid_shown, 120, poll=1.0)
    _wait_for(lambda: _run(at) and "analysis_cancel" not in [b.key for b in at.button], 120, poll=1.0)
    assert any("300 of 300 training images" in c.value for c in at.caption)

    # The embedding of a split analysed in the background is mapped by a job too: the page shows its progress.
    at.session_state["explore_embed_method"] = "tsne"
    at.segmented_control(key="explore_mode").set_value("Embedding")
    start = time.perf_counter()
    _run(at)
    assert time.perf_counter() - start < 5
    assert "embedding_job_cancel" in [b.key for b in at.button] and not at.get("plotly_chart")
    _wait_for(lambda: _run(at) and at.get("plotly_chart"), 120, poll=1.0)
    assert "embedding_job_cancel" not in [b.key for b in at.button]
    assert at.selectbox(key="explore_embed_method").value == "tsne"


def test_setup_measures_a_large_test_split_in_the_background_then_shows_its_accuracy(monkeypatch):
    monkeypatch.setattr(app.analysis, "INLINE_PIXELS", 0)  # this small test split counts as large
    spec = "synthderm?artifact=none&n_train=60&n_val=20&n_test=150&seed=6"
    open_dataset(spec)
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["dataset_spec"] = spec
    start = time.perf_counter()
    _run(at)
    assert time.perf_counter() - start < 10  # the page does not wait for 150 predictions
    assert "analysis_cancel" in [b.key for b in at.button] and not [m for m in at.metric if m.label == "Clean"]

    def accuracy_shown():
        _run(at)
        return [m.value for m in at.metric if m.label == "Clean"]

    shown = _wait_for(accuracy_shown, 120, poll=1.0)
    expected = clean_and_attacked_accuracy(load_checkpoint(DEFAULT_CHECKPOINT), open_dataset(spec))["clean_acc"]
    assert shown == [f"{expected:.1%}"]


def test_an_analysis_gets_a_slot_of_its_own_while_a_correction_holds_the_cpu(tmp_path):
    store = RunStore(tmp_path)
    first = store.create({"job": 1})
    assert store.claim_next("cpu", 1) == (first, 0)  # the correction takes the one CPU slot
    waiting = store.create({"job": 2})
    analysis = store.create({"split": "train"}, kind=ANALYSIS_KIND)
    assert store.claim_next("cpu", 1) is None  # the next correction queues behind the first
    assert store.claim_next("cpu", 2, ANALYSIS_KIND) == (analysis, 0)  # the page's analysis does not
    assert store.claim_next("cpu", 2, ANALYSIS_KIND) is None  # nothing else queued
    assert store.get(waiting).status == "queued" and store.get(analysis).status == "starting"


def test_concepts_fits_on_a_large_split_once_a_background_job_has_its_activations(monkeypatch, workspace):
    monkeypatch.setattr(app.analysis, "INLINE_PIXELS", 0)
    spec = "synthderm?artifact=none&n_train=200&n_val=20&n_test=20&seed=8"
    dataset = open_dataset(spec)
    view = dataset.split("train")
    marked = {sid: int(i % 4 == 0) for i, sid in enumerate(view.sample_ids[:80])}
    AnnotationStore(workspace).set_labels(dataset.dataset_id, CONCEPT, marked)
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["dataset_spec"] = spec
    _run(at)
    at.switch_page("concepts.py")
    _run(at)
    next(b for b in at.button if b.label == "Fit CAV").click()
    start = time.perf_counter()
    _run(at)
    assert time.perf_counter() - start < 10 and "analysis_cancel" in [b.key for b in at.button]
    assert not [m for m in at.metric if m.label == "Separability (AUC)"]

    def fitted():
        _run(at)
        return [m.value for m in at.metric if m.label == "Separability (AUC)"]

    assert _wait_for(fitted, 120, poll=1.0)
