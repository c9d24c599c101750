"""`python -m backend bench NAME`: run a registered benchmark; it prints its figures and writes JSON."""

from __future__ import annotations

from functools import partial

from backend.bench import Benchmark, benchmarks
from backend.cli.common import write_json
from backend.cli.registry import Command, group

__all__ = ["bench_commands"]

group("bench", help="run a benchmark; prints its figures and writes JSON", metavar="NAME")


def bench_commands() -> list[Command]:
    """A command `bench NAME` per registered benchmark, taking its options."""
    return [
        Command(f"bench {name}", partial(_run_bench, bench), bench.options, bench.help, description=bench.help)
        for name, bench in benchmarks().items()
    ]


def _run_bench(bench: Benchmark, opts) -> int:
    """Measure, print the figures, write the JSON."""
    result = bench.measure(opts)
    for line in result.lines():
        print(line)
    write_json(opts.json, result.to_json())
    return 0
