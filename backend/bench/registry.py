"""The benchmark registry: each benchmark declares its CLI arguments and the function that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["Benchmark", "register_bench", "registered"]

# (add its arguments to a parser, run it on the parsed arguments -> JSON-ready dict, help text)
Benchmark = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict], str]
_BENCHMARKS: dict[str, Benchmark] = {}


def register_bench(name: str, *, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Declare a benchmark: its CLI arguments and the function that runs it."""

    def decorate(run: Callable[[argparse.Namespace], dict]):
        _BENCHMARKS[name] = (add_arguments, run, help)
        return run

    return decorate


def registered() -> dict[str, Benchmark]:
    return dict(_BENCHMARKS)
