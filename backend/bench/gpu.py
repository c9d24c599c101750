"""`bench gpu`: the analysis stages and an RR-ClArC correction on the GPU against the same on the CPU, on the embedded
benchmark and the default model: how much faster, and whether the results agree.

Stages (first `--images` training images): the forward pass of logits and the default layer (fp32), and the LRP
heatmaps (fp32: relevance conservation needs it). Agreement: the largest logit difference, the share of equal
predictions, the mean correlation of the heatmaps. The correction (`--epochs`, the defaults otherwise) runs with bf16
autocast on the GPU (`mixed_precision`, the default) and fp32 on the CPU, each in its own workspace so neither reads
the other's cached activations; clean and attacked test accuracy after it must agree within `--tolerance` (1 point).
`--device cpu` compares the CPU with itself: a check of the bench on a machine without a GPU (with a small
`--dataset`, in the tests).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from backend.attribution import class_heatmaps
from backend.bench.registry import BenchOptions, BenchResult, printed, register_bench
from backend.concepts import collect_in_one_pass
from backend.correction import LoopConfig
from backend.data import open_dataset, view_batch
from backend.defaults import DEFAULT_CHECKPOINT, DEFAULT_DATASET
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.models import load_checkpoint
from backend.options import option
from backend.runs import CorrectionJob, analysis_wanted, run_correction_job


@dataclass(frozen=True, kw_only=True)
class GpuBench(BenchOptions):
    """the stages and a correction on the GPU against the CPU"""

    device: str = option("cuda", help="the device compared with the CPU")
    images: int = option(1024, help="training images of the stage timings")
    epochs: int = option(10, help="epochs of each correction")
    tolerance: float = option(0.01, help="largest accuracy difference")
    dataset: str = option(DEFAULT_DATASET, help="dataset spec (default: the embedded benchmark)")


@dataclass(frozen=True)
class GpuResult(BenchResult):
    device: str  # the compared device's name
    images: int
    stages: dict[str, dict]  # stage -> cpu_s, device_s, speedup
    agreement: dict[str, float]  # max_logit_diff, same_prediction, heatmap_correlation
    correction: dict  # cpu, device: seconds, clean_acc, attacked_acc; epochs, mixed_precision
    accuracy_diff: dict[str, float]
    agree: bool
    tolerance: float = printed()

    def lines(self) -> list[str]:
        diffs, epochs, runs = self.accuracy_diff, self.correction["epochs"], self.correction
        return [
            *(
                f"  RR-ClArC {epochs} epochs on {'cpu' if where == 'cpu' else self.device}: "
                f"{runs[where]['seconds']:.1f} s, clean {runs[where]['clean_acc']:.1%}, "
                f"attacked {runs[where]['attacked_acc']:.1%}"
                for where in ("cpu", "device")
            ),
            f"  accuracy differences: clean {diffs['clean_acc'] * 100:.2f} pts, attacked "
            f"{diffs['attacked_acc'] * 100:.2f} pts: {'within' if self.agree else 'OUTSIDE'} "
            f"{self.tolerance * 100:.0f} point",
        ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stages(device: torch.device, view, dataset_id: str) -> dict:
    """Seconds of the pass and the heatmaps on `device`, with their outputs (on the CPU) for the comparison."""
    model = load_checkpoint(DEFAULT_CHECKPOINT, device=device)
    wanted = analysis_wanted(model, (model.default_layer,), full_maps=False)
    with tempfile.TemporaryDirectory() as scratch:
        collect_in_one_pass(model, view.head(min(64, len(view))), dataset_id, wanted[:1], workspace=scratch)  # warm-up
        _sync(device)
        start = time.perf_counter()
        found = collect_in_one_pass(model, view, dataset_id, wanted, workspace=scratch, batch_size=256)
        _sync(device)
        pass_s = time.perf_counter() - start
        logits = np.array(found[wanted[0]].values)
    maps = []
    start = time.perf_counter()
    for first in range(0, len(view), 256):
        x, _ = view_batch(view, range(first, min(first + 256, len(view))), model.meta.normalization)
        maps.append(class_heatmaps(model, x).maps)
    _sync(device)
    heatmaps_s = time.perf_counter() - start
    return {"single_pass": pass_s, "heatmaps": heatmaps_s, "logits": logits, "maps": np.concatenate(maps)}


def _correction(device: str, epochs: int, dataset: str) -> dict:
    with tempfile.TemporaryDirectory() as workspace:
        loop = LoopConfig(epochs=epochs, device=device)
        job = CorrectionJob(out=f"{workspace}/corrected.safetensors", dataset=dataset, loop=loop)
        start = time.perf_counter()
        result = run_correction_job(job, workspace=workspace)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "clean_acc": result.after.clean_acc, "attacked_acc": result.after.attacked_acc}


def _heatmap_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.divide((a * b).sum(axis=1), norms, out=np.ones(len(a)), where=norms > 0)))


@register_bench("gpu", GpuBench)
def bench_gpu(opts: GpuBench) -> GpuResult:
    if opts.device == "auto":
        raise ConfigError("bench gpu compares one named device with the CPU: use --device cuda (or cpu)")
    device = resolve_device(opts.device)  # 'cuda' without a GPU: a clear error, nothing measured
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    dataset = open_dataset(opts.dataset)
    view = dataset.split("train").head(opts.images)
    print(f"{name} against the CPU ({torch.get_num_threads()} threads), {len(view)} images of {opts.dataset}")
    cpu, other = _stages(torch.device("cpu"), view, dataset.dataset_id), _stages(device, view, dataset.dataset_id)
    agreement = {
        "max_logit_diff": float(np.abs(cpu["logits"] - other["logits"]).max()),
        "same_prediction": float((cpu["logits"].argmax(1) == other["logits"].argmax(1)).mean()),
        "heatmap_correlation": _heatmap_correlation(cpu["maps"], other["maps"]),
    }
    stages = {
        stage: {"cpu_s": cpu[stage], "device_s": other[stage], "speedup": cpu[stage] / other[stage]}
        for stage in ("single_pass", "heatmaps")
    }
    for stage, row in stages.items():
        print(f"  {stage:11s} cpu {row['cpu_s']:7.2f} s  {name} {row['device_s']:7.2f} s  ({row['speedup']:.1f}x)")
    print(
        f"  agreement: logits within {agreement['max_logit_diff']:.2e}, {agreement['same_prediction']:.1%} same "
        f"predictions, heatmap correlation {agreement['heatmap_correlation']:.4f}"
    )
    runs = {"cpu": _correction("cpu", opts.epochs, opts.dataset)}
    runs["device"] = _correction(opts.device, opts.epochs, opts.dataset)
    diffs = {key: abs(runs["cpu"][key] - runs["device"][key]) for key in ("clean_acc", "attacked_acc")}
    agree = all(d <= opts.tolerance for d in diffs.values())
    return GpuResult(
        device=name,
        images=len(view),
        stages=stages,
        agreement=agreement,
        correction=runs | {"epochs": opts.epochs, "mixed_precision": device.type == "cuda"},
        accuracy_diff=diffs,
        agree=agree,
        tolerance=opts.tolerance,
    )
