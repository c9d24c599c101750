"""`python -m backend runs submit | sweep | list | show | cancel`: background correction runs from the command line."""

from __future__ import annotations

import argparse
import json

from backend.cli.common import add_job_arguments, job_from_args, write_json
from backend.errors import ClarcError
from backend.runs import LocalExecutor, RayExecutor, submit_sweep, sweep_summary

__all__ = ["add_runs"]


def add_runs(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register the `runs` command and its verbs."""
    p = sub.add_parser("runs", help="background correction runs: submit, list, show, cancel, sweep")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--ray", metavar="ADDRESS", help="submit to the Ray cluster at ADDRESS (default: local)")
    engine.add_argument("--max-cpu-jobs", type=int, help="local CPU runs at once (default 1)")
    engine.add_argument("--wait", action="store_true", help="wait until the runs have finished")
    q = verbs.add_parser("submit", parents=[common, engine], help="queue one correction run")
    add_job_arguments(q, with_out=False)
    q.add_argument("--name", default="", help="a name for the run")
    q.set_defaults(run=_run_runs_submit)
    q = verbs.add_parser("sweep", parents=[common, engine], help="queue a grid over lambda as one sweep")
    add_job_arguments(q, with_out=False)
    q.add_argument("--lams", required=True, help="comma-separated lambdas, e.g. 1e3,1e4,1e5,1e6")
    q.add_argument("--methods", help="comma-separated methods (default: --method)")
    q.add_argument("--cav-kinds", help="comma-separated CAV kinds (default: --cav-kind)")
    q.set_defaults(run=_run_runs_sweep)
    q = verbs.add_parser("list", parents=[common], help="all runs, or those of a sweep, with their status")
    q.add_argument("--sweep", help="only the runs of this sweep, with the trade-off summary")
    q.add_argument("--json", help="write the list as JSON to this file")
    q.set_defaults(run=_run_runs_list)
    q = verbs.add_parser("show", parents=[common], help="one run: status, progress, metrics, error, outputs")
    q.add_argument("run_id")
    q.add_argument("--json", help="write the run as JSON to this file")
    q.set_defaults(run=_run_runs_show)
    q = verbs.add_parser("cancel", parents=[common], help="cancel a queued or running run")
    q.add_argument("run_id")
    q.set_defaults(run=_run_runs_cancel)


def _executor(args: argparse.Namespace):
    if getattr(args, "ray", None):
        return RayExecutor(args.ray, args.workspace)
    return LocalExecutor(args.workspace, max_cpu_jobs=getattr(args, "max_cpu_jobs", None))


def _print_runs(records) -> None:
    print(f"{'id':24s} {'status':10s} {'progress':>8s} {'clean':>6s} {'attack':>6s}  name")
    for r in records:
        after = (r.result or {}).get("after") or {}
        clean = f"{after['clean_acc']:.3f}" if after.get("clean_acc") is not None else "-"
        attacked = f"{after['attacked_acc']:.3f}" if after.get("attacked_acc") is not None else "-"
        print(f"{r.id:24s} {r.status:10s} {r.progress:8.0%} {clean:>6s} {attacked:>6s}  {r.name}")


def _finish_submission(args, executor, run_ids: list[str], extra: dict) -> int:
    records = executor.wait(run_ids) if args.wait else [executor.store.get(r) for r in run_ids]
    _print_runs(records)
    write_json(args.json, extra | {"runs": [r.to_dict() for r in records]})
    return 0 if not args.wait or all(r.status == "succeeded" for r in records) else 1


def _run_runs_submit(args: argparse.Namespace) -> int:
    executor = _executor(args)
    run_id = executor.submit(job_from_args(args, out=""), name=args.name)
    return _finish_submission(args, executor, [run_id], {})


def _run_runs_sweep(args: argparse.Namespace) -> int:
    try:
        lams = [float(v) for v in args.lams.split(",") if v.strip()]
    except ValueError:
        raise ClarcError(f"--lams must be comma-separated numbers, got {args.lams!r}") from None
    methods = args.methods.split(",") if args.methods else None
    kinds = args.cav_kinds.split(",") if args.cav_kinds else None
    executor = _executor(args)
    sweep_id, run_ids = submit_sweep(executor, job_from_args(args, out=""), lams, methods, kinds)
    print(f"sweep {sweep_id}: {len(run_ids)} runs")
    code = _finish_submission(args, executor, run_ids, {"sweep_id": sweep_id})
    if args.wait:
        _print_sweep(sweep_summary(executor.store, sweep_id))
    return code


def _print_sweep(rows: list[dict]) -> None:
    print(f"{'lambda':>10s} {'method':9s} {'clean':>6s} {'attack':>6s}  pareto")
    for row in rows:
        lam = f"{row['lam']:g}" if row["lam"] is not None else "-"
        clean = f"{row['clean_acc']:.3f}" if row["clean_acc"] is not None else "-"
        attacked = f"{row['attacked_acc']:.3f}" if row["attacked_acc"] is not None else "-"
        print(f"{lam:>10s} {row['method']:9s} {clean:>6s} {attacked:>6s}  {'*' if row['pareto'] else ''}")


def _run_runs_list(args: argparse.Namespace) -> int:
    store = LocalExecutor(args.workspace).store  # an executor start marks runs with dead workers as failed
    records = store.list(sweep_id=args.sweep)
    _print_runs(records)
    payload = {"runs": [r.to_dict() for r in records]}
    if args.sweep:
        payload["summary"] = sweep_summary(store, args.sweep)
        _print_sweep(payload["summary"])
    write_json(args.json, payload)
    return 0


def _run_runs_show(args: argparse.Namespace) -> int:
    record = LocalExecutor(args.workspace).store.get(args.run_id)
    data = record.to_dict()
    print(json.dumps({k: v for k, v in data.items() if k not in ("result", "config")}, indent=2, default=str))
    write_json(args.json, data)
    return 0


def _run_runs_cancel(args: argparse.Namespace) -> int:
    status = LocalExecutor(args.workspace).cancel(args.run_id)
    print(f"{args.run_id}: {status}")
    return 0
