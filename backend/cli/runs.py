"""`python -m backend runs submit | sweep | list | show | cancel`: background correction runs from the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

from backend.cli.arguments import from_args
from backend.cli.common import add_job_arguments, job_from_args, write_json
from backend.cli.registry import command, group
from backend.errors import ClarcError
from backend.options import CommonOptions, JsonOutput, option, switch
from backend.runs import CorrectionJob, LocalExecutor, RayExecutor, submit_sweep, sweep_summary

__all__ = ["SubmitOptions"]


group("runs", help="background correction runs: submit, list, show, cancel, sweep")


@dataclass(frozen=True, kw_only=True)
class SubmitOptions(CommonOptions):
    """Where runs go and whether to wait for them; the job's options are declared by `add_job_arguments`."""

    ray: str | None = option(None, help="submit to the Ray cluster at ADDRESS (default: local)", metavar="ADDRESS")
    max_cpu_jobs: int | None = option(None, help="local CPU runs at once (default 1)")
    wait: bool = switch(help="wait until the runs have finished")
    job: CorrectionJob | None = from_args(lambda args: job_from_args(args, out=""))
    json: str | None = from_args(lambda args: args.json)


@dataclass(frozen=True, kw_only=True)
class _Submit(SubmitOptions):
    """queue one correction run"""

    name: str = option("", help="a name for the run")


@dataclass(frozen=True, kw_only=True)
class _Sweep(SubmitOptions):
    """queue a grid over lambda as one sweep"""

    lams: str = option(help="comma-separated lambdas, e.g. 1e3,1e4,1e5,1e6")
    methods: str | None = option(None, help="comma-separated methods (default: --method)")
    cav_kinds: str | None = option(None, help="comma-separated CAV kinds (default: --cav-kind)")


@dataclass(frozen=True, kw_only=True)
class _List(CommonOptions, JsonOutput):
    """all runs, or those of a sweep, with their status"""

    sweep: str | None = option(None, help="only the runs of this sweep, with the trade-off summary")


@dataclass(frozen=True, kw_only=True)
class _Run(CommonOptions):
    run_id: str = option(help="the run's id", positional=True)


@dataclass(frozen=True, kw_only=True)
class _Show(_Run, JsonOutput):
    """one run: status, progress, metrics, error, outputs"""


@dataclass(frozen=True, kw_only=True)
class _Cancel(_Run):
    """cancel a queued or running run"""


def _executor(opts: SubmitOptions):
    if getattr(opts, "ray", None):
        return RayExecutor(opts.ray, opts.workspace)
    return LocalExecutor(opts.workspace, max_cpu_jobs=getattr(opts, "max_cpu_jobs", None))


def _print_runs(records) -> None:
    print(f"{'id':24s} {'status':10s} {'progress':>8s} {'clean':>6s} {'attack':>6s}  name")
    for r in records:
        after = r.correction.after if r.correction else None
        clean = f"{after.clean_acc:.3f}" if after else "-"
        attacked = f"{after.attacked_acc:.3f}" if after and after.attacked_acc is not None else "-"
        print(f"{r.id:24s} {r.status:10s} {r.progress:8.0%} {clean:>6s} {attacked:>6s}  {r.name}")


def _finish_submission(opts, executor, run_ids: list[str], extra: dict) -> int:
    records = executor.wait(run_ids) if opts.wait else [executor.store.get(r) for r in run_ids]
    _print_runs(records)
    write_json(opts.json, extra | {"runs": [r.to_dict() for r in records]})
    return 0 if not opts.wait or all(r.status == "succeeded" for r in records) else 1


@command("runs submit", _Submit, arguments=partial(add_job_arguments, with_out=False))
def _run_runs_submit(opts: _Submit) -> int:
    executor = _executor(opts)
    run_id = executor.submit(opts.job, name=opts.name)
    return _finish_submission(opts, executor, [run_id], {})


@command("runs sweep", _Sweep, arguments=partial(add_job_arguments, with_out=False))
def _run_runs_sweep(opts: _Sweep) -> int:
    try:
        lams = [float(v) for v in opts.lams.split(",") if v.strip()]
    except ValueError:
        raise ClarcError(f"--lams must be comma-separated numbers, got {opts.lams!r}") from None
    methods = opts.methods.split(",") if opts.methods else None
    kinds = opts.cav_kinds.split(",") if opts.cav_kinds else None
    executor = _executor(opts)
    sweep_id, run_ids = submit_sweep(executor, opts.job, lams, methods, kinds)
    print(f"sweep {sweep_id}: {len(run_ids)} runs")
    code = _finish_submission(opts, executor, run_ids, {"sweep_id": sweep_id})
    if opts.wait:
        _print_sweep(sweep_summary(executor.store, sweep_id))
    return code


def _print_sweep(rows: list[dict]) -> None:
    print(f"{'lambda':>10s} {'method':9s} {'clean':>6s} {'attack':>6s}  pareto")
    for row in rows:
        lam = f"{row['lam']:g}" if row["lam"] is not None else "-"
        clean = f"{row['clean_acc']:.3f}" if row["clean_acc"] is not None else "-"
        attacked = f"{row['attacked_acc']:.3f}" if row["attacked_acc"] is not None else "-"
        print(f"{lam:>10s} {row['method']:9s} {clean:>6s} {attacked:>6s}  {'*' if row['pareto'] else ''}")


@command("runs list", _List)
def _run_runs_list(opts: _List) -> int:
    store = LocalExecutor(opts.workspace).store  # an executor start marks runs with dead workers as failed
    records = store.list(sweep_id=opts.sweep)
    _print_runs(records)
    payload = {"runs": [r.to_dict() for r in records]}
    if opts.sweep:
        payload["summary"] = sweep_summary(store, opts.sweep)
        _print_sweep(payload["summary"])
    write_json(opts.json, payload)
    return 0


@command("runs show", _Show)
def _run_runs_show(opts: _Show) -> int:
    record = LocalExecutor(opts.workspace).store.get(opts.run_id)
    data = record.to_dict()
    print(json.dumps({k: v for k, v in data.items() if k not in ("result", "config")}, indent=2, default=str))
    write_json(opts.json, data)
    return 0


@command("runs cancel", _Cancel)
def _run_runs_cancel(opts: _Cancel) -> int:
    status = LocalExecutor(opts.workspace).cancel(opts.run_id)
    print(f"{opts.run_id}: {status}")
    return 0
