"""Benchmarks behind `python -m backend bench NAME`: each takes its options (a `BenchOptions` config) and returns a
typed result (a `BenchResult`: its JSON and the figures it prints)."""

from __future__ import annotations

from backend.bench.registry import Benchmark, BenchOptions, BenchResult, printed, register_bench, registered

__all__ = ["BenchOptions", "BenchResult", "Benchmark", "benchmarks", "printed", "register_bench"]


def benchmarks() -> dict[str, Benchmark]:
    """Every benchmark, by name (their modules register themselves when imported here, on first use)."""
    from backend.bench import (  # noqa: F401  (imported on demand)
        attribution,
        cav,
        correction,
        data,
        default_model,
        discovery,
        gpu,
        multi,
        natural,
        scale,
        soak,
    )

    return registered()
