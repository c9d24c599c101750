"""`bench attribution`: bias relevance of the default model with and without the artifact, how well concept
masks find the planted artifact, and LRP latency (one image vs a batch, measured in the same run)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from backend.attribution import (
    class_heatmaps,
    concept_heatmaps,
    heatmap_masks,
    iou,
    pointing_game,
    r_bias,
    tune_mask_config,
)
from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.concepts import cached_activations, fit_cav
from backend.data import open_dataset, view_batch
from backend.errors import ConfigError
from backend.models import load_checkpoint
from backend.options import LayerOption, ModelOption, switch


@dataclass(frozen=True, kw_only=True)
class AttributionBench(BenchOptions, ModelOption, LayerOption):
    """R_bias, concept-mask IoU and LRP latency"""

    quick: bool = switch(help="300 test and 150 validation samples, fewer timings")


@dataclass(frozen=True)
class AttributionResult(BenchResult):
    layer: str
    artifact: str
    r_bias: dict  # attacked_predicted_class, n, attacked_mean, clean_mean
    concept_masks: dict  # sigma, low, high, val_iou, test_iou, test_iou_median, pointing_game, n
    latency: dict  # single_median_ms, batch32_ms_per_image, singles32_ms_per_image, batch_speedup_per_image, device

    def lines(self) -> list[str]:
        rb, cm, lat = self.r_bias, self.concept_masks, self.latency
        return [
            f"R_bias on {rb['n']} attacked test images predicted {rb['attacked_predicted_class']}: "
            f"{rb['attacked_mean']:.3f} with the artifact vs {rb['clean_mean']:.3f} for their clean versions",
            f"concept masks ({self.layer}, sigma {cm['sigma']}, thresholds {cm['low']}/{cm['high']} tuned on val, IoU "
            f"{cm['val_iou']:.3f}): test IoU {cm['test_iou']:.3f} (median {cm['test_iou_median']:.3f}), "
            f"pointing game {cm['pointing_game']:.3f}",
            f"LRP latency: one image {lat['single_median_ms']:.1f} ms median; batch of 32 "
            f"{lat['batch32_ms_per_image']:.2f} ms per image vs {lat['singles32_ms_per_image']:.2f} ms in 32 single "
            f"calls ({lat['batch_speedup_per_image']:.1f}x cheaper)",
        ]


def _in_batches(fn, x: torch.Tensor, size: int = 128):
    return [fn(x[i : i + size]) for i in range(0, len(x), size)]


@register_bench("attribution", AttributionBench)
def bench_attribution(opts: AttributionBench) -> AttributionResult:
    model = load_checkpoint(opts.checkpoint_path)
    dataset = open_dataset(model.meta.dataset, opts.workspace)
    if dataset.planting is None:
        raise ConfigError("bench attribution needs a dataset with a planted artifact")
    layer = opts.layer_of(model)
    attacked_class = dataset.classes.index(dataset.planting.classes[0])
    n_test = 300 if opts.quick else len(dataset.split("test"))
    n_val = 150 if opts.quick else len(dataset.split("val"))

    def batch(split: str, view: str, n: int):
        v = dataset.split(split, view)
        x, _ = view_batch(v, range(n), model.meta.normalization)
        return x, np.stack([v.mask(i) for i in range(n)])

    # Bias relevance: attacked images the model calls the attacked class, against their clean versions.
    x_att, true_masks = batch("test", "attacked", n_test)
    x_clean, _ = batch("test", "clean", n_test)
    att = _in_batches(lambda x: class_heatmaps(model, x), x_att)
    att_maps = np.concatenate([h.maps for h in att])
    targets = torch.cat([h.targets for h in att]).numpy()
    clean_maps = np.concatenate([h.maps for h in _in_batches(lambda x: class_heatmaps(model, x), x_clean)])
    chosen = targets == attacked_class
    rb_att, rb_clean = r_bias(att_maps, true_masks)[chosen], r_bias(clean_maps, true_masks)[chosen]

    # Concept masks: a pattern CAV from the planted training labels; blur/threshold tuned on val, IoU on test.
    train = cached_activations(
        model, dataset.split("train"), dataset.dataset_id, layer, "max", workspace=opts.workspace
    )
    cav = fit_cav(np.asarray(train.values), train.has_artifact.astype(int), layer=layer, pooling="max")
    x_val, val_masks = batch("val", "attacked", n_val)
    val_maps = np.concatenate(_in_batches(lambda x: concept_heatmaps(model, x, cav.vector, layer), x_val))
    mask_config, val_iou = tune_mask_config(val_maps, val_masks)
    test_maps = np.concatenate(_in_batches(lambda x: concept_heatmaps(model, x, cav.vector, layer), x_att))
    test_iou = iou(heatmap_masks(test_maps, mask_config), true_masks)
    pointing = pointing_game(test_maps, true_masks)

    # Latency: one image per call vs a batch of 32, warm, on this machine's CPU (or the model's device).
    one = x_att[:1]
    for _ in range(3):
        class_heatmaps(model, one)
    repeats = 10 if opts.quick else 30
    singles = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        class_heatmaps(model, one)
        singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(32):
        class_heatmaps(model, x_att[i : i + 1])
    thirty_two_singles = time.perf_counter() - t0
    batch_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        class_heatmaps(model, x_att[:32])
        batch_times.append(time.perf_counter() - t0)
    batch_seconds = min(batch_times)

    return AttributionResult(
        layer=layer,
        artifact=dataset.planting.artifact,
        r_bias={
            "attacked_predicted_class": dataset.classes[attacked_class],
            "n": int(chosen.sum()),
            "attacked_mean": float(rb_att.mean()) if chosen.any() else float("nan"),
            "clean_mean": float(rb_clean.mean()) if chosen.any() else float("nan"),
        },
        concept_masks={
            "sigma": mask_config.sigma,
            "low": mask_config.low,
            "high": mask_config.high,
            "val_iou": val_iou,
            "test_iou": float(test_iou.mean()),
            "test_iou_median": float(np.median(test_iou)),
            "pointing_game": float(pointing.mean()),
            "n": n_test,
        },
        latency={
            "single_median_ms": statistics.median(singles) * 1000,
            "batch32_ms_per_image": batch_seconds / 32 * 1000,
            "singles32_ms_per_image": thirty_two_singles / 32 * 1000,
            "batch_speedup_per_image": thirty_two_singles / batch_seconds,
            "device": str(next(model.module.parameters()).device),
        },
    )
