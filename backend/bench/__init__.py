"""Benchmarks behind `python -m backend bench NAME`: each prints its figures and returns a JSON-ready dict."""

from __future__ import annotations

from backend.bench.registry import Benchmark, register_bench, registered

__all__ = ["Benchmark", "benchmarks", "register_bench"]


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
