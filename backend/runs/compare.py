"""Runs side by side: one flat row of figures per run (what it corrected, how, and what it changed), filters over
those rows, and the loss histories of several runs at once for overlaid curves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backend.runs.store import RunRecord, RunStore

__all__ = ["FILTERS", "filter_rows", "loss_histories", "run_rows"]

FILTERS = ("dataset", "concept", "method")  # the columns a user narrows the table by

_FIGURES = ("clean_acc", "attacked_acc", "tcav_sensitivity", "r_bias")


def _concept(record: RunRecord) -> str | None:
    """The concept a run corrected: its CAV's concept once it ran, else the lead of its name (see `run_name`)."""
    cav = (record.result or {}).get("cav") or {}
    return cav.get("concept") or (record.name.split(" · ")[0] if record.name else None)


def run_rows(records: Iterable[RunRecord]) -> list[dict]:
    """One row per run: identity, grid point, status and the before/after figures (None where a run has none)."""
    rows = []
    for record in records:
        result = record.result or {}
        before, after = result.get("before") or {}, result.get("after") or {}
        config = record.config
        row = {
            "run": record.id,
            "name": record.name,
            "status": record.status,
            "dataset": config.get("dataset"),
            "concept": _concept(record),
            "method": config.get("method"),
            "cav_kind": (result.get("cav") or {}).get("kind") or config.get("cav_kind"),
            "lam": (config.get("method_options") or {}).get("lam"),
            "epochs": len(result["history"]) if "history" in result else (config.get("loop") or {}).get("epochs"),
            "sweep": record.sweep_id,
            "created": record.created,
        }
        for figure in _FIGURES:
            row[f"{figure} before"] = before.get(figure)
            row[f"{figure} after"] = after.get(figure)
        for figure in ("clean_acc", "attacked_acc"):
            b, a = before.get(figure), after.get(figure)
            row[f"{figure} change"] = None if a is None or b is None else a - b
        row["attack"] = after.get("attack_source")
        row["seconds"] = result.get("seconds")
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
