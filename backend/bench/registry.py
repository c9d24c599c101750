"""The benchmark registry: each benchmark declares its options (a config inheriting `BenchOptions`) and the function
that measures, which returns a typed result (a `BenchResult` dataclass: its fields are the JSON's keys, its `lines`
the figures printed at the end)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.options import CommonOptions, JsonOutput

__all__ = ["BenchOptions", "BenchResult", "Benchmark", "printed", "register_bench", "registered"]


@dataclass(frozen=True, kw_only=True)
class BenchOptions(CommonOptions, JsonOutput):
    """Every benchmark's options: the workspace, and the file its figures are written to as JSON."""


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark measured. A subclass's fields are its JSON's keys; `lines` are the figures it prints once
    measured (what it prints while measuring, it prints as it goes)."""

    def to_json(self) -> dict:
        """The fields by name, but those made with `printed`."""
        shown = {f.name for f in dataclasses.fields(self) if f.metadata.get("json", True)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in shown}

    def lines(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its name, help, options (a `BenchOptions` config) and the function measuring it."""

    name: str
    help: str
    options: type
    measure: Callable[[Any], BenchResult]
    add_arguments: Callable | None = None  # TRANSITION: a benchmark not yet converted to options


def printed(**field: Any) -> Any:
    """A result field its printed figures mention that is not part of its JSON (a setting: the tolerance)."""
    return dataclasses.field(metadata={"json": False}, **field)


_BENCHMARKS: dict[str, Benchmark] = {}


def register_bench(name: str, *, help: str, options: type = None, add_arguments=None):
    """Declare the decorated function as the benchmark `name`: it takes `options` and returns a BenchResult."""

    def decorate(measure: Callable[[Any], BenchResult]):
        _BENCHMARKS[name] = Benchmark(name, help, options, measure, add_arguments)
        return measure

    return decorate


def registered() -> dict[str, Benchmark]:
    return dict(_BENCHMARKS)
