"""Runs side by side: one flat row of figures per run (what it corrected, how, and what it changed), filters over
those rows, the loss histories of several runs at once for overlaid curves, and one row per concept of a run that
corrected several."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backend.runs.store import RunRecord, RunStore

__all__ = ["FILTERS", "concept_rows", "filter_rows", "loss_histories", "run_rows"]

FILTERS = ("dataset", "concept", "method")  # the columns a user narrows the table by

_FIGURES = ("clean_acc", "attacked_acc", "tcav_sensitivity", "r_bias")


def _concept(record: RunRecord) -> str | None:
    """The concept(s) a run corrected: its CAVs' concepts once it ran, else the lead of its name (see `run_name`)."""
    result = record.result or {}
    names = [c.get("concept") or c.get("name") for c in result.get("concepts") or []]
    if len(names) > 1 and all(names):
        return " + ".join(names)
    cav = result.get("cav") or {}
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


def concept_rows(result: dict) -> list[dict]:
    """One row per concept of a run's result: its class and λ, where its attacked images come from, and its attacked
    accuracy, TCAV sensitivity and R_bias before and after, with the share of its clean-vs-attacked gap closed."""
    rows = []
    for concept in result.get("concepts") or []:
        before, after = concept["before"], concept["after"]
        row = {
            "concept": concept.get("concept") or concept.get("name"),
            "attacked class": concept.get("attacked_class"),
            "lam": concept.get("lam"),
            "attacked images": after.get("attack_source"),
        }
        for figure in ("attacked_acc", "tcav_sensitivity", "r_bias"):
            row[f"{figure} before"], row[f"{figure} after"] = before.get(figure), after.get(figure)
        row["gap closed"] = _gap_closed(before, after)
        rows.append(row)
    return rows


def _gap_closed(before: dict, after: dict) -> float | None:
    """(gap before - gap after) / gap before, the gap being clean minus attacked accuracy; None without a gap."""
    figures = (before.get("clean_acc"), before.get("attacked_acc"), after.get("clean_acc"), after.get("attacked_acc"))
    if any(f is None for f in figures) or figures[0] - figures[1] <= 0:
        return None
    gap = figures[0] - figures[1]
    return (gap - (figures[2] - figures[3])) / gap
