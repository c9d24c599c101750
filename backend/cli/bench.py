"""`python -m backend bench NAME`: run a registered benchmark; it prints its figures and writes JSON."""

from __future__ import annotations

import argparse

from backend.bench import benchmarks
from backend.cli.arguments import add_options, config_from
from backend.cli.common import write_json

__all__ = ["add_bench"]


def add_bench(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", help="run a benchmark; prints its figures and writes JSON")
    names = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, bench in benchmarks().items():
        q = names.add_parser(name, parents=[common], help=bench.help, description=bench.help)
        if bench.add_arguments is None:  # TRANSITION
            add_options(q, bench.options, skip=("workspace", "verbose"))
            q.set_defaults(run=lambda args, bench=bench: _run_bench(bench, config_from(args, bench.options)))
            continue
        bench.add_arguments(q)
        q.add_argument("--json", help="write the figures as JSON to this file")
        q.set_defaults(run=lambda args, run=bench.measure: write_json(args.json, run(args)) or 0)


def _run_bench(bench, opts) -> int:
    result = bench.measure(opts)
    for line in result.lines():
        print(line)
    write_json(opts.json, result.to_json())
    return 0
