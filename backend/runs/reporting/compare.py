"""Runs side by side: one flat row of figures per run (what it corrected, how, and what it changed), filters over
those rows, the loss histories of several runs at once for overlaid curves, and one row per concept of a run that
corrected several."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backend.evaluation import FIGURES, HEADLINE
from backend.runs.execution.store import RunRecord, RunStore
from backend.runs.jobs.correction import stated_penalty_weight
from backend.runs.jobs.result import RunResult

__all__ = ["FILTERS", "concept_rows", "filter_rows", "loss_histories", "run_rows"]

FILTERS = ("dataset", "concept", "method")  # the columns a user narrows the table by


def _concept(record: RunRecord) -> str | None:
    """The concept(s) a run corrected: its CAVs' concepts once it ran, else the lead of its name (see `run_name`)."""
    result = record.correction
    names = [c.concept or c.name for c in result.concepts] if result else []
    if len(names) > 1 and all(names):
        return " + ".join(names)
    return (result.cav.concept if result else None) or (record.name.split(" · ")[0] if record.name else None)


def run_rows(records: Iterable[RunRecord]) -> list[dict]:
    """One row per run: identity, grid point, status and the headline figures before and after, with the change of
    each share (None where a run has none)."""
    rows = []
    for record in records:
        result = record.correction
        config = record.config
        row = {
            "run": record.id,
            "name": record.name,
            "status": record.status,
            "dataset": config.get("dataset"),
            "concept": _concept(record),
            "method": config.get("method"),
            "cav_kind": (result.cav.kind if result else None) or config.get("cav_kind"),
            "lam": stated_penalty_weight(config),
            "epochs": len(result.history) if result else (config.get("loop") or {}).get("epochs"),
            "sweep": record.sweep_id,
            "created": record.created,
        }
        before, after = (result.before, result.after) if result else (None, None)
        for key in HEADLINE:
            row[f"{key} before"] = getattr(before, key, None)
            row[f"{key} after"] = getattr(after, key, None)
        for key in HEADLINE:
            if FIGURES[key].unit == "share":
                row[f"{key} change"] = FIGURES[key].change(row[f"{key} before"], row[f"{key} after"])
        row["attack"] = after.attack_source if after else None
        row["attacked figures"] = result.concepts[0].estimate_label if result else None
        row["seconds"] = result.seconds if result else None
        row["device"] = record.device
        rows.append(row)
    return rows


def filter_rows(rows: Sequence[dict], **chosen: Sequence[str]) -> list[dict]:
    """The rows whose value of each filter column (dataset, concept, method) is among the chosen ones; a filter left
    empty keeps everything."""
    unknown = set(chosen) - set(FILTERS)
    if unknown:
        raise ValueError(f"cannot filter runs by {sorted(unknown)}; the filters are {list(FILTERS)}")
    return [row for row in rows if all(not values or row.get(column) in values for column, values in chosen.items())]


def loss_histories(store: RunStore, run_ids: Sequence[str]) -> dict[str, list[dict]]:
    """Each run's metric history (per-epoch loss, cross-entropy and penalty), in the order asked."""
    return {run_id: list(store.get(run_id).history) for run_id in run_ids}


def concept_rows(result: RunResult) -> list[dict]:
    """One row per concept of a run's result: its class and λ, where its attacked images come from, and its attacked
    accuracy, TCAV sensitivity and R_bias before and after, with the share of its clean-vs-attacked gap closed (and
    its 95% interval) and how far the attacked figures can be trusted."""
    rows = []
    for concept in result.concepts:
        row = {
            "concept": concept.concept or concept.name,
            "attacked class": concept.attacked_class,
            "lam": concept.lam,
            "attacked images": concept.after.attack_source,
            "attacked figures": concept.estimate_label,
        }
        for key in ("attacked_acc", "tcav_sensitivity", "r_bias"):
            row[f"{key} before"], row[f"{key} after"] = getattr(concept.before, key), getattr(concept.after, key)
        row["gap closed"] = concept.gap_closed()
        interval = concept.gap_closed_interval
        row["gap closed, 95% interval"] = f"{interval[0]:.0%} to {interval[1]:.0%}" if interval else None
        rows.append(row)
    return rows
