"""Command line of ClArC Studio: `python -m backend train | info | import-checkpoint | cav | cavs | correct |
evaluate | runs | report | reveal | bench`, one module per command group, each command declared where it runs
(`backend.cli.registry`) with its options built from configs (`backend.options`), each with --help."""

from __future__ import annotations

import argparse
import logging
import sys

# The command modules declare their commands when imported, in the order --help lists them.
from backend.cli import train, info, checkpoints, concepts, correct, runs, report, reveal  # noqa: F401  # isort: skip
from backend.cli.bench import bench_commands
from backend.cli.registry import add_commands, registered
from backend.errors import ClarcError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="ClArC Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub, [*registered(), *bench_commands()])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except ClarcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
