"""`python -m backend report RUN_ID [--out FILE.html]`: the audit report of a succeeded correction run, one
self-contained HTML file that opens offline and prints to PDF."""

from __future__ import annotations

from dataclasses import dataclass

from backend.cli.registry import command
from backend.options import CommonOptions, option
from backend.runs import RunStore
from backend.runs.reporting.report import write_report

__all__ = ["ReportOptions"]


@dataclass(frozen=True, kw_only=True)
class ReportOptions(CommonOptions):
    """the audit report of a succeeded correction run as one self-contained HTML file

    Write the audit report of a succeeded run (`runs list` shows the ids): model and data, the concept's annotations,
    the CAV and its quality, the configuration, the figures before and after, heatmaps before and after, the loss curve
    and, for a run of a sweep, the sweep's trade-off. One HTML file with everything inline: it opens offline and prints
    to PDF."""

    run_id: str = option(help="the run's id", positional=True)
    out: str | None = option(None, help="the HTML file to write (default: RUN_ID-report.html in the current folder)")


@command("report", ReportOptions)
def _run_report(opts: ReportOptions) -> int:
    path = write_report(RunStore(opts.workspace), opts.run_id, opts.out or f"{opts.run_id}-report.html")
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
