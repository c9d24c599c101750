"""How long Explore takes to render for a user, measured with Streamlit's AppTest in a fresh session.

`python -m bench.explore_latency first --checkpoint C --dataset D` opens the app (Setup), then Explore, which starts
the split's analysis job; it reports both render times, checks that the job was still running when Explore
showed, then cancels the job and waits for it to stop. `grid` renders grid pages of 24 in the heatmap view: the first
(which also warms the LRP kernels up), another (sorted otherwise) whose heatmaps it computes, and that one again
(its heatmaps read back), and a third while an analysis job computes the split's heatmaps beside it. Prints one
JSON line; `bench scale` runs it in a subprocess with the bench's workspace in `CLARC_WORKSPACE`; `--background`
sends even a small split (a smoke test's) to the background, as a large one goes.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamlit.testing.v1 import AppTest

import app.analysis
from backend.cli.arguments import parse
from backend.options import option, switch
from backend.runs import ANALYSIS_KIND, FINAL_STATUSES, AnalysisJob, LocalExecutor

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run(timeout=900)
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the page raised: {[e.message for e in at.exception]}")
    if at.error:
        raise SystemExit(f"the page shows an error: {[e.value for e in at.error]}")
    return seconds


def _session(checkpoint: str, dataset: str, look: str = "input") -> tuple[AppTest, float]:
    at = AppTest.from_file(APP, default_timeout=900)
    at.session_state["checkpoint"] = checkpoint
    at.session_state["dataset_spec"] = dataset
    at.session_state["explore_look"] = look
    setup_s = _timed_run(at)
    at.switch_page("explore.py")
    return at, setup_s


def first_render(checkpoint: str, dataset: str) -> dict:
    at, setup_s = _session(checkpoint, dataset)
    explore_s = _timed_run(at)
    executor = LocalExecutor()
    active = executor.store.list(statuses=("queued", "starting", "running"), kinds=(ANALYSIS_KIND,))
    if not active or "analysis_cancel" not in [b.key for b in at.button]:
        raise SystemExit("Explore rendered without a running analysis job: nothing measured a page beside one")
    _stop_analyses()
    return {"setup_s": setup_s, "first_render_s": explore_s}


def _stop_analyses() -> None:
    """Cancel the analysis jobs the pages started (Setup's of the test split, Explore's of the training split) and
    wait until they have stopped, so that nothing else runs beside what is measured next."""
    executor = LocalExecutor()
    active = executor.store.list(statuses=("queued", "starting", "running"), kinds=(ANALYSIS_KIND,))
    for run in active:
        executor.cancel(run.id)
    stopped = executor.wait([r.id for r in active], timeout=600)
    if any(r.status not in FINAL_STATUSES for r in stopped):
        raise SystemExit("an analysis job did not stop within 10 minutes of its cancellation")


def grid_page(checkpoint: str, dataset: str) -> dict:
    at, _ = _session(checkpoint, dataset, look="heatmap")
    _stop_analyses()  # Setup's, of the test split
    first = _timed_run(at)  # the server's first heatmaps: includes the one-time warm-up of the LRP kernels
    at.selectbox(key="explore_sort").set_value("confidence, highest first")  # another first page
    cold = _timed_run(at)
    warm = _timed_run(at)
    beside = _beside_heatmap_job(at, checkpoint, dataset)
    return {
        "grid_page_first_s": first,
        "grid_page_s": cold,
        "grid_page_cached_s": warm,
        "grid_page_beside_job_s": beside,
    }


def _beside_heatmap_job(at: AppTest, checkpoint: str, dataset: str) -> float:
    """A third first page (sorted otherwise again) while an analysis job computes the split's heatmaps in a worker,
    as when a user browses during the split's analysis; the job is cancelled afterwards. (A split so small that its
    job is done before it is seen at its heatmaps measures the page alone.)"""
    executor = LocalExecutor()
    job = AnalysisJob(checkpoint=checkpoint, dataset=dataset, split="train")
    run_id = executor.submit_analysis(job)
    deadline = time.time() + 600
    while not (record := executor.store.get(run_id)).message.startswith("LRP heatmaps"):
        if record.status == "succeeded":
            break
        if record.status in FINAL_STATUSES or time.time() > deadline:
            raise SystemExit(f"the analysis job never reached its heatmaps: {record.status}, {record.message}")
        time.sleep(0.2)
    at.selectbox(key="explore_sort").set_value("confidence, lowest first")
    seconds = _timed_run(at)
    _stop_analyses()
    return seconds


@dataclass(frozen=True, kw_only=True)
class ExploreLatencyOptions:
    mode: Literal["first", "grid"] = option(help="what to measure", positional=True)
    checkpoint: str = option(help="the model the app opens")
    dataset: str = option(help="the dataset spec the app opens")
    background: bool = switch(help="analyse the split in the background however small it is")


def main() -> None:
    args = parse(ExploreLatencyOptions, description=__doc__)
    if args.background:
        app.analysis.INLINE_PIXELS = 0  # AppTest runs the pages in this process
    measure = first_render if args.mode == "first" else grid_page
    result = measure(args.checkpoint, args.dataset)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
