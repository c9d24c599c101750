"""`bench default-model`: the shipped default model regenerates from its seed. Trains today's default config again
(about 70 s on 2 cores) and compares its clean and attacked test accuracy with the card's (target: within 1 point)."""

from __future__ import annotations

import argparse

from backend.bench.registry import register_bench
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

_FIGURES = ("test_clean_acc", "test_attacked_acc")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest accepted difference (default 0.01)")


@register_bench(
    "default-model",
    help="train the default model again from its seed and compare its figures with the shipped card",
    add_arguments=_arguments,
)
def bench_default_model(args: argparse.Namespace) -> dict:
    card = load_checkpoint(DEFAULT_CHECKPOINT).meta.metrics
    result = train_model(TrainConfig(device="cpu"), workspace=resolve_workspace(args.workspace))
    fresh = result.model.meta.metrics
    differences = {name: fresh[name] - card[name] for name in _FIGURES}
    within = all(abs(d) <= args.tolerance for d in differences.values())
    for name in _FIGURES:
        print(f"{name:18s} card {card[name]:.4f}  regenerated {fresh[name]:.4f}  ({differences[name] * 100:+.2f} pts)")
    print(
        f"trained in {result.seconds:.1f} s; {'within' if within else 'NOT within'} {args.tolerance * 100:g} point(s)"
    )
    return {
        "card": {name: card[name] for name in _FIGURES},
        "regenerated": {name: fresh[name] for name in _FIGURES},
        "difference": differences,
        "within_tolerance": within,
        "seconds": result.seconds,
    }
