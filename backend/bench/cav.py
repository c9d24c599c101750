"""`bench cav`: every CAV kind on the embedded benchmark with the default model: alignment with the true artifact
direction, held-out AUC, fit time, divergence between kinds, significance, and the activation cache's speed-up."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from backend.bench.registry import BenchOptions, BenchResult, printed, register_bench
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
from backend.models import load_checkpoint
from backend.options import LayerOption, ModelOption, option, switch
from backend.storage import resolve_workspace


@dataclass(frozen=True, kw_only=True)
class CavBench(BenchOptions, ModelOption, LayerOption):
    """CAV kinds: alignment, AUC, fit time; activation cache speed-up"""

    pooling: Literal["max", "mean"] = option("max", help="how the layer's maps are pooled")
    quick: bool = switch(help="fit on 1,000 training samples, 10 random CAVs")


@dataclass(frozen=True)
class CavResult(BenchResult):
    layer: str
    pooling: str
    artifact: str | None
    n_train: int
    n_concept: int
    kinds: dict[str, dict]  # kind -> alignment, auc, fit_seconds, params
    divergence: dict
    pattern_vs_svm_fit_speedup: float
    significance: dict  # score, p_value, null_max
    cache: dict  # first_seconds, second_seconds, speedup
    n_random: int = printed()

    def lines(self) -> list[str]:
        sig, cache = self.significance, self.cache
        return [
            f"layer {self.layer} ({self.pooling}-pooled), {self.n_train} training samples, {self.n_concept} with the "
            "artifact",
            f"{'kind':10s} {'alignment':>9s} {'AUC':>7s} {'fit s':>9s}",
            *(
                f"{kind:10s} {row['alignment']:9.3f} {row['auc']:7.3f} {row['fit_seconds']:9.4f}"
                for kind, row in self.kinds.items()
            ),
            f"pattern fits {self.pattern_vs_svm_fit_speedup:.0f}x faster than svm with its grid search",
            f"significance: held-out AUC {sig['score']:.3f}, p = {sig['p_value']:.3f} against {self.n_random} random "
            "CAVs",
            f"activation cache: first {cache['first_seconds']:.2f} s, second {cache['second_seconds'] * 1000:.1f} ms "
            f"({cache['speedup']:.0f}x)",
        ]


@register_bench("cav", CavBench)
def bench_cav(opts: CavBench) -> CavResult:
    model = load_checkpoint(opts.checkpoint_path)
    layer = opts.layer_of(model)
    dataset = open_dataset(model.meta.dataset, opts.workspace)
    workspace = resolve_workspace(opts.workspace)

    def acts(split: str, view: str, indices=None, where=workspace):
        return cached_activations(
            model, dataset.split(split, view), dataset.dataset_id, layer, opts.pooling, indices=indices, workspace=where
        )

    train_n = len(dataset.split("train"))
    indices = np.random.default_rng(0).permutation(train_n)[:1000] if opts.quick else None

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
        cav = fit_cav(x, y, CavConfig(kind=kind), layer=layer, pooling=opts.pooling, sample_ids=train.sample_ids)
        vectors[kind] = cav.vector
        kinds[kind] = {
            "alignment": alignment(cav.vector, attacked.values, clean.values).mean,
            "auc": separability_auc(cav.scores(held_out.values), held_out.has_artifact),
            "fit_seconds": cav.fit_seconds,
            "params": cav.params,
        }
    sig = significance(x, y, CavConfig(kind="pattern"), n_random=10 if opts.quick else 50)
    return CavResult(
        layer=layer,
        pooling=opts.pooling,
        artifact=dataset.planting.artifact if dataset.planting else None,
        n_train=int(len(y)),
        n_concept=int(y.sum()),
        kinds=kinds,
        divergence=divergence(vectors),
        pattern_vs_svm_fit_speedup=kinds["svm"]["fit_seconds"] / kinds["pattern"]["fit_seconds"],
        significance={"score": sig.score, "p_value": sig.p_value, "null_max": float(sig.null.max())},
        cache={"first_seconds": first, "second_seconds": second, "speedup": first / second},
        n_random=len(sig.null),
    )
