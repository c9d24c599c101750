"""`python -m backend report RUN_ID [--out FILE.html]`: the audit report of a succeeded correction run, one
self-contained HTML file that opens offline and prints to PDF."""

from __future__ import annotations

import argparse

from backend.runs import RunStore
from backend.runs.report import write_report

__all__ = ["add_report"]


def add_report(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register the `report` command."""
    p = sub.add_parser(
        "report",
        parents=[common],
        help="the audit report of a succeeded correction run as one self-contained HTML file",
        description="Write the audit report of a succeeded run (`runs list` shows the ids): model and data, the "
        "concept's annotations, the CAV and its quality, the configuration, the figures before and after, heatmaps "
        "before and after, the loss curve and, for a run of a sweep, the sweep's trade-off. One HTML file with "
        "everything inline: it opens offline and prints to PDF.",
    )
    p.add_argument("run_id", help="the run's id")
    p.add_argument("--out", help="the HTML file to write (default: RUN_ID-report.html in the current folder)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    path = write_report(RunStore(args.workspace), args.run_id, args.out or f"{args.run_id}-report.html")
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
