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

import argparse
import tempfile
import time

import numpy as np
import torch

from backend.attribution import class_heatmaps, view_batch
from backend.bench.registry import register_bench
from backend.concepts import collect_in_one_pass
from backend.correction import LoopConfig
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT, DEFAULT_DATASET
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.models import load_checkpoint
from backend.runs import CorrectionJob, analysis_wanted, run_correction_job


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda)")
    parser.add_argument("--images", type=int, default=1024, help="training images of the stage timings (1024)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each correction (default 10)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest accuracy difference (0.01)")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset spec (default: the embedded benchmark)")


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
        x, _ = view_batch(view, range(first, min(first + 256, len(view))), model)
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
    after = result["after"]
    return {"seconds": seconds, "clean_acc": after["clean_acc"], "attacked_acc": after["attacked_acc"]}


def _heatmap_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.divide((a * b).sum(axis=1), norms, out=np.ones(len(a)), where=norms > 0)))


@register_bench("gpu", help="the stages and a correction on the GPU against the CPU", add_arguments=_arguments)
def bench_gpu(args: argparse.Namespace) -> dict:
    if args.device == "auto":
        raise ConfigError("bench gpu compares one named device with the CPU: use --device cuda (or cpu)")
    device = resolve_device(args.device)  # 'cuda' without a GPU: a clear error, nothing measured
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    dataset = open_dataset(args.dataset)
    view = dataset.split("train").head(args.images)
    print(f"{name} against the CPU ({torch.get_num_threads()} threads), {len(view)} images of {args.dataset}")
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
    runs = {"cpu": _correction("cpu", args.epochs, args.dataset)}
    runs["device"] = _correction(args.device, args.epochs, args.dataset)
    diffs = {key: abs(runs["cpu"][key] - runs["device"][key]) for key in ("clean_acc", "attacked_acc")}
    agree = all(d <= args.tolerance for d in diffs.values())
    for where, run in runs.items():
        print(
            f"  RR-ClArC {args.epochs} epochs on {'cpu' if where == 'cpu' else name}: {run['seconds']:.1f} s, "
            f"clean {run['clean_acc']:.1%}, attacked {run['attacked_acc']:.1%}"
        )
    print(
        f"  accuracy differences: clean {diffs['clean_acc'] * 100:.2f} pts, attacked {diffs['attacked_acc'] * 100:.2f} "
        f"pts: {'within' if agree else 'OUTSIDE'} {args.tolerance * 100:.0f} point"
    )
    return {
        "device": name,
        "images": len(view),
        "stages": stages,
        "agreement": agreement,
        "correction": runs | {"epochs": args.epochs, "mixed_precision": device.type == "cuda"},
        "accuracy_diff": diffs,
        "agree": agree,
    }
