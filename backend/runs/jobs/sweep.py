"""Sweeps: a grid over lambda (and optionally method and CAV kind) launched as one group of runs, summarised as the
trade-off between clean and attacked accuracy with the Pareto-best runs marked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from backend.correction import get_method
from backend.errors import ConfigError
from backend.runs.execution.store import RunStore
from backend.runs.jobs.concepts import short_name
from backend.runs.jobs.correction import CorrectionJob, stated_penalty_weight

__all__ = ["pareto_front", "run_name", "submit_sweep", "sweep_summary"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (clean, attacked) accuracy pairs: True where no other point is at least as good in both and better in one."""
    best = []
    for i, (c, a) in enumerate(points):
        dominated = any(c2 >= c and a2 >= a and (c2 > c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        best.append(not dominated)
    return best


def run_name(job: CorrectionJob) -> str:
    """A run's name that says what it is: concept(s), method, λ (where the method has one) and epochs."""
    lam = get_method(job.method).penalty_weight_of(job.method_options)
    parts = [" + ".join(short_name(spec) for spec in job.concepts), job.method]
    parts += [f"λ={lam:g}"] if lam is not None else []
    trains = get_method(job.method).trains
    parts += [f"{job.loop.epochs} epoch{'s' if job.loop.epochs != 1 else ''}"] if trains else []
    return " · ".join(parts)


def submit_sweep(
    executor,
    base: CorrectionJob,
    lams: Sequence[float],
    methods: Sequence[str] | None = None,
    cav_kinds: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """Submit the grid as one sweep; methods without a lambda run once per CAV kind. Returns (sweep id, run ids)."""
    if not lams:
        raise ConfigError("a sweep needs at least one lambda")
    sweep_id = "sweep-" + uuid.uuid4().hex[:8]
    run_ids = []
    for method in methods or (base.method,):
        knob = get_method(method).penalty_weight
        for kind in cav_kinds or (base.cav_kind,):
            options = dict(base.method_options) if method == base.method else {}
            for lam in lams if knob else (None,):
                job = replace(
                    base,
                    method=method,
                    cav_kind=kind,
                    method_options=options | ({knob: float(lam)} if knob else {}),
                )
                label = run_name(job) + (f" · {kind} CAV" if cav_kinds else "")
                run_ids.append(executor.submit(job, name=label, sweep_id=sweep_id))
    return sweep_id, run_ids


def sweep_summary(store: RunStore, sweep_id: str) -> list[dict]:
    """One row per run: its grid point, status and after-correction figures (the attacked accuracy is the one that
    exists: planted, supplied or transplanted, as `attack_source` says); `pareto` marks the best trade-offs among the
    runs that succeeded (on clean accuracy alone when no run has attacked figures)."""
    rows = []
    for record in store.list(sweep_id=sweep_id):
        after = record.correction.after if record.correction else None
        rows.append(
            {
                "run_id": record.id,
                "name": record.name,
                "status": record.status,
                "method": record.config.get("method"),
                "cav_kind": record.config.get("cav_kind"),
                "lam": stated_penalty_weight(record.config),
                "clean_acc": getattr(after, "clean_acc", None),
                "attacked_acc": getattr(after, "attacked_acc", None),
                "attack_source": getattr(after, "attack_source", None),
                "tcav_sensitivity": getattr(after, "tcav_sensitivity", None),
                "pareto": False,
            }
        )
    done = [r for r in rows if r["status"] == "succeeded" and r["clean_acc"] is not None]
    for row, best in zip(done, pareto_front([(r["clean_acc"], r["attacked_acc"] or 0.0) for r in done])):
        row["pareto"] = best
    return rows
