"""`python -m backend bench NAME`: run a registered benchmark; it prints its figures and writes JSON."""

from __future__ import annotations

import argparse

from backend.bench import benchmarks
from backend.cli.common import write_json

__all__ = ["add_bench"]


def add_bench(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", help="run a benchmark; prints its figures and writes JSON")
    names = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, (add_arguments, run, help_text) in benchmarks().items():
        q = names.add_parser(name, parents=[common], help=help_text, description=help_text)
        add_arguments(q)
        q.add_argument("--json", help="write the figures as JSON to this file")
        q.set_defaults(run=lambda args, run=run: write_json(args.json, run(args)) or 0)
