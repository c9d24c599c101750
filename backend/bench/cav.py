"""`bench cav`: every CAV kind on the embedded benchmark with the default model: alignment with the true artifact
direction, held-out AUC, fit time, divergence between kinds, significance, and the activation cache's speed-up."""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from backend.bench.registry import register_bench
from backend.concepts import (
    CavConfig,
    alignment,
    cached_activations,
    cav_kinds,
    divergence,
    fit_cav,
    separability_auc,
    significance,
)
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint
from backend.storage import resolve_workspace


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model (default: the shipped one)")
    parser.add_argument("--layer", help="CAV layer (default: the architecture's default layer)")
    parser.add_argument("--pooling", default="max", choices=["max", "mean"])
    parser.add_argument("--quick", action="store_true", help="fit on 1,000 training samples, 10 random CAVs")


@register_bench("cav", help="CAV kinds: alignment, AUC, fit time; activation cache speed-up", add_arguments=_arguments)
def bench_cav(args: argparse.Namespace) -> dict:
    model = load_checkpoint(args.checkpoint)
    layer = args.layer or model.default_layer
    dataset = open_dataset(model.meta.dataset, args.workspace)
    workspace = resolve_workspace(args.workspace)

    def acts(split: str, view: str, indices=None, where=workspace):
        return cached_activations(
            model, dataset.split(split, view), dataset.dataset_id, layer, args.pooling, indices=indices, workspace=where
        )

    train_n = len(dataset.split("train"))
    indices = np.random.default_rng(0).permutation(train_n)[:1000] if args.quick else None

    # The cache: the same request twice, the first a guaranteed miss in a fresh cache.
    with tempfile.TemporaryDirectory() as fresh:
        t0 = time.perf_counter()
        acts("train", "as_planted", indices, fresh)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        acts("train", "as_planted", indices, fresh)
        second = time.perf_counter() - t0

    train = acts("train", "as_planted", indices)
    held_out = acts("val", "as_planted")
    attacked, clean = acts("test", "attacked"), acts("test", "clean")
    x, y = np.asarray(train.values), train.has_artifact.astype(int)
    kinds: dict[str, dict] = {}
    vectors = {}
    for kind in cav_kinds():
        cav = fit_cav(x, y, CavConfig(kind=kind), layer=layer, pooling=args.pooling, sample_ids=train.sample_ids)
        vectors[kind] = cav.vector
        kinds[kind] = {
            "alignment": alignment(cav.vector, attacked.values, clean.values).mean,
            "auc": separability_auc(cav.scores(held_out.values), held_out.has_artifact),
            "fit_seconds": cav.fit_seconds,
            "params": cav.params,
        }
    sig = significance(x, y, CavConfig(kind="pattern"), n_random=10 if args.quick else 50)
    result = {
        "layer": layer,
        "pooling": args.pooling,
        "artifact": dataset.planting.artifact if dataset.planting else None,
        "n_train": int(len(y)),
        "n_concept": int(y.sum()),
        "kinds": kinds,
        "divergence": divergence(vectors),
        "pattern_vs_svm_fit_speedup": kinds["svm"]["fit_seconds"] / kinds["pattern"]["fit_seconds"],
        "significance": {"score": sig.score, "p_value": sig.p_value, "null_max": float(sig.null.max())},
        "cache": {"first_seconds": first, "second_seconds": second, "speedup": first / second},
    }
    print(f"layer {layer} ({args.pooling}-pooled), {len(y)} training samples, {int(y.sum())} with the artifact")
    print(f"{'kind':10s} {'alignment':>9s} {'AUC':>7s} {'fit s':>9s}")
    for kind, row in kinds.items():
        print(f"{kind:10s} {row['alignment']:9.3f} {row['auc']:7.3f} {row['fit_seconds']:9.4f}")
    print(f"pattern fits {result['pattern_vs_svm_fit_speedup']:.0f}x faster than svm with its grid search")
    print(f"significance: held-out AUC {sig.score:.3f}, p = {sig.p_value:.3f} against {len(sig.null)} random CAVs")
    print(f"activation cache: first {first:.2f} s, second {second * 1000:.1f} ms ({result['cache']['speedup']:.0f}x)")
    return result
