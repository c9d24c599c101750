"""`bench default-model`: the shipped default model regenerates from its seed. Trains today's default config again
(about 70 s on 2 cores) and compares its clean and attacked test accuracy with the card's (target: within 1 point)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.bench.registry import BenchOptions, BenchResult, printed, register_bench
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint
from backend.options import option
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

_FIGURES = ("test_clean_acc", "test_attacked_acc")


@dataclass(frozen=True, kw_only=True)
class DefaultModelBench(BenchOptions):
    """train the default model again from its seed and compare its figures with the shipped card"""

    tolerance: float = option(0.01, help="largest accepted difference")


@dataclass(frozen=True)
class DefaultModelResult(BenchResult):
    card: dict[str, float]
    regenerated: dict[str, float]
    difference: dict[str, float]
    within_tolerance: bool
    seconds: float
    tolerance: float = printed()

    def lines(self) -> list[str]:
        return [
            *(
                f"{name:18s} card {self.card[name]:.4f}  regenerated {self.regenerated[name]:.4f}  "
                f"({self.difference[name] * 100:+.2f} pts)"
                for name in _FIGURES
            ),
            f"trained in {self.seconds:.1f} s; {'within' if self.within_tolerance else 'NOT within'} "
            f"{self.tolerance * 100:g} point(s)",
        ]


@register_bench("default-model", DefaultModelBench)
def bench_default_model(opts: DefaultModelBench) -> DefaultModelResult:
    card = load_checkpoint(DEFAULT_CHECKPOINT).meta.metrics
    result = train_model(TrainConfig(device="cpu"), workspace=resolve_workspace(opts.workspace))
    fresh = result.model.meta.metrics
    differences = {name: fresh[name] - card[name] for name in _FIGURES}
    return DefaultModelResult(
        card={name: card[name] for name in _FIGURES},
        regenerated={name: fresh[name] for name in _FIGURES},
        difference=differences,
        within_tolerance=all(abs(d) <= opts.tolerance for d in differences.values()),
        seconds=result.seconds,
        tolerance=opts.tolerance,
    )
