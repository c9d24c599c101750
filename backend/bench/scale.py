"""`bench scale`: every analysis stage and a short RR-ClArC correction on an ISIC-2019-layout folder of N images at
the model's resolution, with what a user waits for on Explore meanwhile.

The bench writes the folder (`isic_folder`), a randomly initialised model of `--arch` (weights do not change the
timings; nothing is downloaded), and works in its own workspace under the folder, so every stage starts cold:
  decode_cold / decode_warm   every training image decoded into the decoded-image cache, then read back from it
  first render                the app's Setup, then Explore, which starts the split's analysis job (a subprocess
                              drives the app with AppTest; the job is cancelled once the page has shown)
  single_pass                 logits and the default layer max-, mean-pooled and full, in one forward pass
  grid page                   a grid page of 24 in Explore's heatmap view: its heatmaps computed (the server's first
                              page, with the kernels' warm-up, apart), then read back
  embedding_pca / _tsne       2-D maps of the default layer's max-pooled activations, as Explore's embedding asks
                              an analysis job for them (t-SNE maps 3,000 images and places the rest: not extrapolated)
  heatmaps, outlier_scores    LRP heatmaps of the split (or its first `--heatmap-images`) and their outlier scores
  correction                  RR-ClArC, one epoch, CAV fitted from the ruler labels, no attacked test set
`separate_vs_single_pass` times the same four entries as one forward pass each against one pass, on the first
`--subset` images; `decode_cold_vs_warm` is decode_cold over decode_warm. Per-image figures divide by the images
the stage saw; `extrapolated_s` scales them to ISIC 2019's 25,331 images (its training split: 80%).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from backend.attribution import cached_heatmaps, cached_outlier_scores
from backend.bench.isic_folder import write_isic_folder
from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.concepts import collect_activations, collect_in_one_pass
from backend.correction import LoopConfig
from backend.data import open_dataset
from backend.discovery import split_embedding
from backend.evaluation import AttackConfig
from backend.models import build_model, get_architecture, load_checkpoint, save_checkpoint
from backend.models.checkpoint import ModelMeta
from backend.options import option
from backend.runs import ConceptSpec, CorrectionJob, analysis_wanted, run_correction_job
from backend.storage import WORKSPACE_ENV, resolve_workspace
from backend.storage.paths import ROOTS_ENV

ISIC_2019_IMAGES = 25_331
_TRAIN_SHARE = 0.8  # the hash split's training share
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class ScaleBench(BenchOptions):
    """analysis stages and a correction on an ISIC-sized folder"""

    images: int = option(2000, help="images in the folder")
    arch: str = option("resnet18", help="architecture")
    size: int | None = option(None, help="image size in pixels (default: the architecture's)")
    subset: int = option(256, help="images of the separate-vs-single pass ratio")
    heatmap_images: int | None = option(None, help="heatmaps of the first K training images only (default all)")
    root: str | None = option(None, help="where to write the folder (default <workspace>/bench-scale/<images>)")


@dataclass(frozen=True)
class ScaleResult(BenchResult):
    images: int
    arch: str
    size: int
    train_images: int
    seconds: dict[str, float]  # by stage
    per_image_ms: dict[str, float]
    extrapolated_s: dict[str, float]  # to ISIC 2019's training split
    first_render_s: float
    setup_render_s: float
    grid_page_s: float
    grid_page_first_s: float
    grid_page_cached_s: float
    grid_page_beside_job_s: float
    peak_rss_mb: float
    peak_rss_mb_by_process: dict[str, float]
    peak_rss_mb_by_stage: dict[str, float]
    ratios: dict[str, float]  # separate_vs_single_pass, decode_cold_vs_warm
    pass_ratio_images: int
    stage_images: dict[str, int]
    threads: int
    json_digits: ClassVar[dict[str, int]] = {
        "seconds": 2,
        "per_image_ms": 2,
        "extrapolated_s": 1,
        "first_render_s": 2,
        "setup_render_s": 2,
        "grid_page_s": 2,
        "grid_page_first_s": 2,
        "grid_page_cached_s": 2,
        "grid_page_beside_job_s": 2,
        "peak_rss_mb": 1,
        "peak_rss_mb_by_process": 1,
        "ratios": 2,
    }

    def lines(self) -> list[str]:
        return [
            ", ".join(f"peak RSS of {k}: {v:,.0f} MB" for k, v in self.peak_rss_mb_by_process.items()),
            "peak RSS by stage: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in self.peak_rss_mb_by_stage.items()),
            f"extrapolated to ISIC 2019 ({ISIC_2019_IMAGES:,} images, 80% training):",
            *(
                f"  {stage:15s} {self.per_image_ms[stage]:8.2f} ms per image -> {value / 60:7.1f} min"
                for stage, value in self.extrapolated_s.items()
            ),
        ]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _StageMemory:
    """The largest resident set of this process during each stage, sampled every 0.1 s by a thread (the
    high-water mark of the whole run says how much, this says where)."""

    def __init__(self) -> None:
        self.stage, self.peaks = "setup", {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            rss = _current_rss_mb()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join()
        return {stage: round(mb, 1) for stage, mb in self.peaks.items()}


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _app_latency(mode: str, checkpoint: Path, spec: str, workspace: Path, root: Path) -> dict:
    """Run `bench.explore_latency` in a subprocess on the bench's workspace; its JSON line."""
    env = os.environ | {WORKSPACE_ENV: str(workspace), ROOTS_ENV: str(root), "PYTHONPATH": str(_REPO)}
    command = [sys.executable, "-m", "bench.explore_latency", mode, "--background", "--checkpoint", str(checkpoint)]
    command += ["--dataset", spec]
    done = subprocess.run(command, cwd=_REPO, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the app latency probe ({mode}) failed:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _model(root: Path, arch: str, size: int, dataset) -> Path:
    torch.manual_seed(0)
    module = build_model(arch, len(dataset.classes))
    meta = ModelMeta(arch=arch, classes=tuple(dataset.classes), input_size=size, dataset=str(dataset.spec))
    return save_checkpoint(module, meta, root / f"{arch}-{size}.safetensors")


def _clear(workspace: Path, *caches: str) -> None:
    for name in caches:
        shutil.rmtree(workspace / "cache" / name, ignore_errors=True)


def _decode_all(view) -> float:
    start = time.perf_counter()
    for i in range(len(view)):
        view.image(i)
    return time.perf_counter() - start


def _pass_ratio(model, view, dataset_id: str, wanted, subset: int) -> dict:
    """Seconds of one forward pass per (layer, pooling) against one pass for all, on the first `subset` images."""
    head = view.head(min(subset, len(view)))
    collect_activations(model, head, *wanted[0], indices=range(min(8, len(head))))  # warm-up, for both sides
    start = time.perf_counter()
    for layer, pooling in wanted:
        collect_activations(model, head, layer, pooling, batch_size=64)
    separate = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        collect_in_one_pass(model, head, dataset_id, wanted, workspace=scratch, batch_size=64)
        single = time.perf_counter() - start
    return {"images": len(head), "separate_s": separate, "single_s": single, "ratio": separate / single}


@register_bench("scale", ScaleBench)
def bench_scale(opts: ScaleBench) -> ScaleResult:
    arch = get_architecture(opts.arch)
    size = opts.size or arch.input_size
    root = Path(opts.root or resolve_workspace() / "bench-scale" / str(opts.images)).resolve()
    workspace = root / "workspace"
    seconds: dict[str, float] = {}
    images: dict[str, int] = {}

    start = time.perf_counter()
    folder = write_isic_folder(root, opts.images)
    print(f"folder: {opts.images:,} JPEGs of 600x450 in {root} ({'written' if folder['written'] else 'reused'})")
    if folder["written"]:
        seconds["write_folder"], images["write_folder"] = time.perf_counter() - start, opts.images
    spec = f"isic:{root}?size={size}"
    shutil.rmtree(workspace, ignore_errors=True)  # its caches and run store: every stage starts cold
    dataset = open_dataset(spec, workspace)
    view = dataset.split("train")
    checkpoint = _model(root, opts.arch, size, dataset)
    model = load_checkpoint(checkpoint)
    print(f"{len(view):,} training images; {opts.arch} at {size} px, {torch.get_num_threads()} threads")

    memory = _StageMemory()
    memory.stage = "decode"
    seconds["decode_cold"] = _decode_all(view)
    seconds["decode_warm"] = _decode_all(view)
    images["decode_cold"] = images["decode_warm"] = len(view)
    print(f"decode: {seconds['decode_cold']:.1f} s cold, {seconds['decode_warm']:.1f} s from the decoded cache")

    wanted = analysis_wanted(model, (model.default_layer,), full_maps=True)
    memory.stage = "pass_ratio"
    ratio = _pass_ratio(model, view, dataset.dataset_id, wanted, opts.subset)
    print(
        f"{len(wanted)} entries on {ratio['images']} images: {ratio['separate_s']:.1f} s in separate passes, "
        f"{ratio['single_s']:.1f} s in one ({ratio['ratio']:.2f}x)"
    )

    first = _app_latency("first", checkpoint, spec, workspace, root)
    print(
        f"Explore's first render: {first['first_render_s']:.2f} s while the analysis job ran "
        f"(Setup before it: {first['setup_s']:.2f} s)"
    )
    _clear(workspace, "activations", "heatmaps", "outliers")  # what the cancelled job left: the pass starts cold

    memory.stage = "single_pass"
    start = time.perf_counter()
    collect_in_one_pass(model, view, dataset.dataset_id, wanted, workspace=workspace, batch_size=64)
    seconds["single_pass"], images["single_pass"] = time.perf_counter() - start, len(view)
    print(
        f"single pass ({', '.join(f'{layer}/{pooling}' for layer, pooling in wanted)}): {seconds['single_pass']:.1f} s"
    )

    for method in ("pca", "tsne"):
        memory.stage = f"embedding_{method}"
        start = time.perf_counter()
        split_embedding(
            model, view, dataset.dataset_id, model.default_layer, "activations", method, workspace=workspace
        )
        seconds[memory.stage], images[memory.stage] = time.perf_counter() - start, len(view)
    print(
        f"embedding of the activations: PCA {seconds['embedding_pca']:.1f} s, t-SNE {seconds['embedding_tsne']:.1f} s"
    )

    grid = _app_latency("grid", checkpoint, spec, workspace, root)
    print(
        f"a grid page of 24 with heatmaps: {grid['grid_page_s']:.2f} s ({grid['grid_page_first_s']:.2f} s for the "
        f"server's first, {grid['grid_page_cached_s']:.2f} s with its heatmaps cached; "
        f"{grid['grid_page_beside_job_s']:.2f} s beside an analysis job computing heatmaps)"
    )

    memory.stage = "heatmaps"
    _clear(workspace, "heatmaps", "outliers")  # the grid pages' heatmaps: every map of the stage is computed
    n_maps = min(opts.heatmap_images or len(view), len(view))
    logits = collect_in_one_pass(model, view, dataset.dataset_id, wanted[:1], workspace=workspace)[wanted[0]].values
    predicted = np.asarray(logits).argmax(axis=1)
    start = time.perf_counter()
    for first_index in range(0, n_maps, 64):
        chunk = np.arange(first_index, min(first_index + 64, n_maps))
        cached_heatmaps(model, view, dataset.dataset_id, chunk, workspace=workspace)
    seconds["heatmaps"], images["heatmaps"] = time.perf_counter() - start, n_maps
    print(f"heatmaps of {n_maps:,} images: {seconds['heatmaps']:.1f} s")
    if n_maps == len(view):
        memory.stage = "outlier_scores"
        start = time.perf_counter()
        cached_outlier_scores(model, view, dataset.dataset_id, predicted, workspace=workspace)
        seconds["outlier_scores"], images["outlier_scores"] = time.perf_counter() - start, len(view)
        print(f"outlier scores: {seconds['outlier_scores']:.1f} s")

    job = CorrectionJob(
        out=str(root / "corrected.safetensors"),
        checkpoint=str(checkpoint),
        dataset=spec,
        concepts=(ConceptSpec(labels=str(root / "artifact_labels.csv")),),
        loop=LoopConfig(epochs=1),
        attack=AttackConfig(attack="none"),
    )
    memory.stage = "correction"
    start = time.perf_counter()
    run_correction_job(job, workspace=workspace)
    seconds["correction"], images["correction"] = time.perf_counter() - start, len(view)
    print(f"RR-ClArC, one epoch (fitting the CAV, training, evaluating): {seconds['correction']:.1f} s")

    per_image_ms = {stage: seconds[stage] / images[stage] * 1000 for stage in seconds}
    train_2019 = ISIC_2019_IMAGES * _TRAIN_SHARE
    extrapolated = {
        stage: ms / 1000 * (ISIC_2019_IMAGES if stage == "write_folder" else train_2019)
        for stage, ms in per_image_ms.items()
        if stage != "embedding_tsne"  # subsampled beyond 3,000 images: not linear in them
    }
    by_stage = memory.stop()
    by_process = {"stages": _peak_rss_mb(), "app_first_render": first["peak_rss_mb"], "app_grid": grid["peak_rss_mb"]}
    peak = max(by_process.values())
    return ScaleResult(
        images=opts.images,
        arch=opts.arch,
        size=size,
        train_images=len(view),
        seconds=seconds,
        per_image_ms=per_image_ms,
        extrapolated_s=extrapolated,
        first_render_s=first["first_render_s"],
        setup_render_s=first["setup_s"],
        grid_page_s=grid["grid_page_s"],
        grid_page_first_s=grid["grid_page_first_s"],
        grid_page_cached_s=grid["grid_page_cached_s"],
        grid_page_beside_job_s=grid["grid_page_beside_job_s"],
        peak_rss_mb=peak,
        peak_rss_mb_by_process=by_process,
        peak_rss_mb_by_stage=by_stage,
        ratios={
            "separate_vs_single_pass": ratio["ratio"],
            "decode_cold_vs_warm": seconds["decode_cold"] / seconds["decode_warm"],
        },
        pass_ratio_images=ratio["images"],
        stage_images=images,
        threads=torch.get_num_threads(),
    )
