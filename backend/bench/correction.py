"""`bench correction`: every method on the embedded benchmark with the default model, the same budget for all, with a
pattern CAV and again with an svm CAV; plus the speed figures (RR-ClArC vs fine-tuning per epoch, cached vs
full-forward training)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from backend.bench.registry import BenchOptions, BenchResult, register_bench
from backend.concepts import CavConfig, fit_concept, planted_labels
from backend.correction import ConceptTarget, LoopConfig, correct
from backend.data import open_dataset
from backend.device import resolve_device
from backend.evaluation import evaluate
from backend.models import load_checkpoint
from backend.options import DatasetOption, ModelOption, option, switch

METHODS = ("finetune", "aclarc", "pclarc", "rrr", "rrclarc")
_CAV_METHODS = ("aclarc", "pclarc", "rrclarc")
_KEYS = ("clean_acc", "attacked_acc", "tcav_sensitivity", "tcav_score", "r_bias")


@dataclass(frozen=True, kw_only=True)
class CorrectionBench(BenchOptions, ModelOption, DatasetOption):
    """RR-ClArC vs its baselines: before/after figures and speed"""

    epochs: int | None = option(None, help="epochs for every method (default 20, --quick 5)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="where the models are corrected")
    quick: bool = switch(help="5 epochs per method")
    markdown: str | None = option(None, help="write the tables as markdown here (default: next to --json)")


def _row(evaluation, seconds: float) -> dict:
    figures = evaluation.to_dict()
    return {key: figures[key] for key in _KEYS} | {"seconds": seconds}


def _table(title: str, methods: dict) -> str:
    lines = [
        f"### {title}",
        "",
        "| method | clean acc | attacked acc | TCAV sensitivity | TCAV score | R_bias | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in methods.items():
        lines.append(
            f"| {name} | {row['clean_acc']:.3f} | {row['attacked_acc']:.3f} | {row['tcav_sensitivity']:.4f} | "
            f"{row['tcav_score']:.3f} | {row['r_bias']:.3f} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CorrectionResult(BenchResult):
    layer: str
    cav_kind: str  # of the CAV the methods correct along, and TCAV measures along: pattern
    cav_pooling: str
    cav_scope: str
    epochs: int
    device: str
    methods: dict[str, dict]  # method (and before) -> clean_acc, attacked_acc, tcav_*, r_bias, seconds
    svm: dict  # cav_kind, methods: the same along an svm CAV
    gap_closed: dict[str, dict[str, float]]  # CAV kind -> method -> share of the clean-attacked gap closed
    speed: dict[str, float | dict]
    evaluation_seconds: float
    markdown: str | None = None  # where the tables were written as markdown

    def to_json(self) -> dict:
        return {k: v for k, v in super().to_json().items() if k != "markdown" or v is not None}

    def tables(self) -> str:
        """The pattern and svm tables, as markdown."""
        title = f"{self.layer}, {self.cav_pooling}-pooled, scope {self.cav_scope}, {self.epochs} epochs per method"
        markdown = _table(f"Pattern CAV ({title}, {self.device})", self.methods)
        return markdown + "\n" + _table("SVM CAV instead (TCAV still along the pattern CAV)", self.svm["methods"])

    def lines(self) -> list[str]:
        pattern, closed, s = self.methods, self.gap_closed, self.speed
        rr, ft = pattern["rrclarc"], pattern["finetune"]
        return [
            self.tables(),
            f"rrclarc closes {closed['pattern']['rrclarc']:.0%} of the clean-attacked gap, clean accuracy "
            f"{(rr['clean_acc'] - pattern['before']['clean_acc']) * 100:+.1f} pts, TCAV sensitivity "
            f"{rr['tcav_sensitivity'] / pattern['before']['tcav_sensitivity']:.3f}x of before, "
            f"{(rr['attacked_acc'] - ft['attacked_acc']) * 100:+.1f} pts attacked accuracy over finetune",
            f"with an svm CAV rrclarc closes {closed['svm']['rrclarc']:.0%} of the gap (pattern: "
            f"{closed['pattern']['rrclarc']:.0%})",
            f"epoch cost rrclarc / finetune (full forward): {s['rrclarc_vs_finetune_epoch']:.2f}x; "
            f"rrclarc full forward {s['rrclarc_full_forward_seconds']:.1f} s vs cached path "
            f"{s['rrclarc_cached_seconds']:.1f} s building the cache ({s['cached_speedup']:.1f}x faster), "
            f"{s['rrclarc_cached_warm_seconds']:.1f} s with it built ({s['cached_speedup_warm']:.1f}x faster)",
        ]


@register_bench("correction", CorrectionBench)
def bench_correction(args: CorrectionBench) -> CorrectionResult:
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint_path, device=device)
    dataset = open_dataset(args.dataset or model.meta.dataset, args.workspace)
    layer = model.default_layer
    epochs = args.epochs or (5 if args.quick else 20)
    loop = LoopConfig(epochs=epochs, device=args.device)
    # The CAVs as a user gets them: fitted from the planted training labels with the product's defaults (pooling,
    # scope: the attacked class's samples).
    labels = planted_labels(dataset)
    cavs = {
        kind: fit_concept(
            model, dataset, labels, layer=layer, config=CavConfig(kind=kind), n_random=0, workspace=args.workspace
        ).cav
        for kind in ("pattern", "svm")
    }
    yardstick = cavs["pattern"]  # TCAV is always measured along the direction that follows the artifact

    t0 = time.perf_counter()
    before = evaluate(model, dataset, yardstick)
    tables: dict[str, dict] = {"pattern": {"before": _row(before, 0.0)}, "svm": {"before": _row(before, 0.0)}}
    for kind, methods in (("pattern", METHODS), ("svm", _CAV_METHODS)):
        for method in methods:
            result = correct(model, dataset, [ConceptTarget(cavs[kind])], method, None, loop, workspace=args.workspace)
            tables[kind][method] = _row(evaluate(result.model, dataset, yardstick), result.seconds)
            print(f"[{kind}] {method:9s} " + " ".join(f"{k}={v:.4f}" for k, v in tables[kind][method].items()))
    evaluation_seconds = time.perf_counter() - t0

    # Speed, in this run: per-epoch cost of the penalty on the full-forward path, and cached vs full-forward training
    # (the cached run starts from an empty cache, so building it is included).
    speed_loop = LoopConfig(epochs=2, device=args.device, cache_activations=False)
    full_ft = correct(
        model, dataset, [ConceptTarget(yardstick)], "finetune", None, speed_loop, workspace=args.workspace
    )
    full_rr = correct(model, dataset, [ConceptTarget(yardstick)], "rrclarc", None, speed_loop, workspace=args.workspace)
    epoch = {
        name: float(np.mean([h["seconds"] for h in r.history]))
        for name, r in (("finetune", full_ft), ("rrclarc", full_rr))
    }
    full_path = correct(
        model,
        dataset,
        [ConceptTarget(yardstick)],
        "rrclarc",
        None,
        LoopConfig(epochs=epochs, device=args.device, cache_activations=False),
        workspace=args.workspace,
    )
    with tempfile.TemporaryDirectory() as fresh:
        cached_path = correct(model, dataset, [ConceptTarget(yardstick)], "rrclarc", None, loop, workspace=fresh)
        warm_path = correct(model, dataset, [ConceptTarget(yardstick)], "rrclarc", None, loop, workspace=fresh)

    pattern = tables["pattern"]
    gap_before = pattern["before"]["clean_acc"] - pattern["before"]["attacked_acc"]

    def closed(row: dict) -> float:
        return (gap_before - (row["clean_acc"] - row["attacked_acc"])) / gap_before if gap_before > 0 else float("nan")

    result = CorrectionResult(
        layer=layer,
        cav_kind="pattern",
        cav_pooling=yardstick.pooling,
        cav_scope=yardstick.scope,
        epochs=epochs,
        device=device.type,
        methods=pattern,
        svm={"cav_kind": "svm", "methods": tables["svm"]},
        gap_closed={kind: {m: closed(row) for m, row in rows.items()} for kind, rows in tables.items()},
        speed={
            "epoch_seconds_full_forward": epoch,
            "rrclarc_vs_finetune_epoch": epoch["rrclarc"] / epoch["finetune"],
            "rrclarc_full_forward_seconds": full_path.seconds,
            "rrclarc_cached_seconds": cached_path.seconds,
            "rrclarc_cached_warm_seconds": warm_path.seconds,
            "cached_speedup": full_path.seconds / cached_path.seconds,
            "cached_speedup_warm": full_path.seconds / warm_path.seconds,
        },
        evaluation_seconds=evaluation_seconds,
    )
    target = args.markdown or (str(Path(args.json).with_suffix(".md")) if args.json else None)
    if target:
        Path(target).write_text(result.tables())
        result = dataclasses.replace(result, markdown=target)
    return result
