"""Pages before background jobs: an analysis job pauses at its next layer while a page holds a foreground lease,
and goes on when it is released, when its holder died or when it is stale."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch

from backend.attribution import class_heatmaps
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.evaluation import predictions_so_far
from backend.models import load_checkpoint
from backend.runs import AnalysisJob, foreground_held, foreground_work, run_analysis_job, wait_for_foreground
from backend.runs.execution.foreground import LEASE_SECONDS, pause_points
from tests.conftest import SMALL_SPEC


def _lease_files(workspace):
    return list((workspace / "foreground").glob("*.lease"))


def test_a_lease_is_held_only_inside_its_block(tmp_path):
    assert not foreground_held(tmp_path) and wait_for_foreground(tmp_path) < 0.5
    with foreground_work(tmp_path):
        assert foreground_held(tmp_path) and len(_lease_files(tmp_path)) == 1
    assert not foreground_held(tmp_path) and not _lease_files(tmp_path)
    try:
        with foreground_work(tmp_path):
            raise KeyError("the page failed")
    except KeyError:
        pass
    assert not _lease_files(tmp_path)  # a page that raised holds nothing


def test_a_wait_ends_with_the_lease_or_a_cancellation(tmp_path):
    release = threading.Event()

    def page():
        with foreground_work(tmp_path):
            release.wait(10)

    holder = threading.Thread(target=page)
    holder.start()
    while not foreground_held(tmp_path):
        time.sleep(0.01)
    threading.Timer(0.4, release.set).start()
    waited = wait_for_foreground(tmp_path)
    holder.join()
    assert 0.3 < waited < 5
    with foreground_work(tmp_path):
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        assert 0.2 < wait_for_foreground(tmp_path, cancel) < 5  # held still: the cancellation ended the wait


def test_leases_of_dead_or_hung_pages_are_ignored(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "foreground"
    folder.mkdir()
    orphan = folder / f"{int(dead.stdout)}-crashed.lease"
    orphan.touch()
    assert not foreground_held(tmp_path) and not orphan.exists()  # its process is gone: removed
    hung = folder / f"{os.getpid()}-hung.lease"
    hung.touch()
    old = time.time() - LEASE_SECONDS - 1
    os.utime(hung, (old, old))
    assert not foreground_held(tmp_path) and wait_for_foreground(tmp_path) < 0.5


def test_an_analysis_job_pauses_while_a_page_holds_a_lease(tmp_path):
    job = AnalysisJob(checkpoint=str(DEFAULT_CHECKPOINT), dataset=SMALL_SPEC, split="val", layers=("features.13",))
    events, done = [], threading.Event()

    def work():
        run_analysis_job(job, workspace=tmp_path, on_progress=events.append)
        done.set()

    model, dataset = load_checkpoint(DEFAULT_CHECKPOINT), open_dataset(SMALL_SPEC, tmp_path)
    with foreground_work(tmp_path):
        threading.Thread(target=work, daemon=True).start()
        time.sleep(3.0)  # unpaused, 30 images at 64 px would be predicted, explained and scored by now
        assert not done.is_set() and events == []
        ready = predictions_so_far(model, dataset.split("val"), dataset.dataset_id, workspace=tmp_path)
        assert ready is None or len(ready.predicted) == 0  # it holds still inside its first batch
    assert done.wait(120), "the job did not go on after the lease was released"
    assert [e.stage for e in events][-1] == "outlier scores" and np.isclose(events[-1].overall, 1.0)


def test_pause_points_wait_in_the_forward_and_the_backward_pass_and_change_nothing():
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    x = torch.rand(4, 3, 64, 64)
    plain = class_heatmaps(model, x).relevance
    in_backward = []
    with pause_points(model.module, lambda: in_backward.append(torch._C._current_autograd_node() is not None), 0):
        paused = class_heatmaps(model, x).relevance
    assert torch.equal(plain, paused)
    assert in_backward.count(False) > 5 and in_backward.count(True) > 5  # layer by layer, both ways
    calls = len(in_backward)
    class_heatmaps(model, x)
    assert len(in_backward) == calls  # the hooks are gone afterwards


def test_a_pages_heatmaps_are_computed_under_a_lease(tmp_path, monkeypatch):
    from app import resources

    monkeypatch.setenv("CLARC_WORKSPACE", str(tmp_path))  # an empty heatmap cache: the maps are computed
    model, dataset = load_checkpoint(DEFAULT_CHECKPOINT), open_dataset(SMALL_SPEC, tmp_path)
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(foreground_held(tmp_path))

    watcher = threading.Thread(target=watch)
    watcher.start()
    maps = resources.heatmaps(model, dataset, tuple(range(24)), "val")
    stop.set()
    watcher.join()
    assert maps.shape == (24, 64, 64) and any(seen) and not foreground_held(tmp_path)
