"""The benchmark registry: each benchmark declares its options (a config inheriting `BenchOptions`, its docstring
the bench's help) and the function that measures, which returns a typed result (a `BenchResult` dataclass: its
fields are the JSON's keys, its `lines` the figures printed at the end)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from backend.options import CommonOptions, JsonOutput, described

__all__ = ["BenchOptions", "BenchResult", "Benchmark", "printed", "register_bench", "registered"]


@dataclass(frozen=True, kw_only=True)
class BenchOptions(CommonOptions, JsonOutput):
    """Every benchmark's options: the workspace, and the file its figures are written to as JSON."""


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark measured. A subclass's fields are its JSON's keys; `lines` are the figures it prints once
    measured (what it prints while measuring, it prints as it goes). Its figures are kept as measured; the JSON
    rounds those named in `json_digits` (a figure, or each figure of a dict) to so many digits."""

    json_digits: ClassVar[dict[str, int]] = {}

    def to_json(self) -> dict:
        """The fields by name (but those made with `printed`), rounded as `json_digits` says."""
        shown = {f.name for f in dataclasses.fields(self) if f.metadata.get("json", True)}
        data = {k: v for k, v in dataclasses.asdict(self).items() if k in shown}
        for name, digits in self.json_digits.items():
            value = data[name]
            data[name] = (
                {k: round(v, digits) for k, v in value.items()} if isinstance(value, dict) else round(value, digits)
            )
        return data

    def lines(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its name, help (its options' docstring), options (a `BenchOptions` config) and the function
    measuring it."""

    name: str
    help: str
    options: type
    measure: Callable[[Any], BenchResult]


def printed(**field: Any) -> Any:
    """A result field its printed figures mention that is not part of its JSON (a setting: the tolerance)."""
    return dataclasses.field(metadata={"json": False}, **field)


_BENCHMARKS: dict[str, Benchmark] = {}


def register_bench(name: str, options: type):
    """Declare the decorated function as the benchmark `name`: it takes `options` (whose docstring says what it
    measures) and returns a BenchResult."""
    help, _ = described(options)

    def decorate(measure: Callable[[Any], BenchResult]):
        _BENCHMARKS[name] = Benchmark(name, help, options, measure)
        return measure

    return decorate


def registered() -> dict[str, Benchmark]:
    return dict(_BENCHMARKS)
