"""Command line of ClArC Studio: `python -m backend train | info | import-checkpoint | cav | cavs | correct |
evaluate | runs | report | reveal | bench`, one module per command group, each command with --help."""

from __future__ import annotations

import argparse
import logging
import sys

from backend.cli.bench import add_bench
from backend.cli.checkpoints import add_import_checkpoint
from backend.cli.concepts import add_cav, add_cavs
from backend.cli.correct import add_correct, add_evaluate
from backend.cli.info import add_info
from backend.cli.report import add_report
from backend.cli.reveal import add_reveal
from backend.cli.runs import add_runs
from backend.cli.train import add_train
from backend.errors import ClarcError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", help="workspace folder (default $CLARC_WORKSPACE or ./workspace)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser = argparse.ArgumentParser(prog="python -m backend", description="ClArC Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (
        add_train,
        add_info,
        add_import_checkpoint,
        add_cav,
        add_cavs,
        add_correct,
        add_evaluate,
        add_runs,
        add_report,
        add_reveal,
        add_bench,
    )
    for add in commands:
        add(sub, common)
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
