"""Figures declared once: each figure a before/after comparison shows carries its label, its unit and which direction
is better on the evaluation result's field, and the CLI, Results, the audit report, run comparison and sweeps read
them from here instead of keeping their own labels and guessing the direction from a key's name."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Figure", "HEADLINE", "figure_field", "figures_of"]

Unit = Literal["share", "value"]  # share: a proportion, shown in percent and changed in points


@dataclass(frozen=True)
class Figure:
    """One figure: `key` is the result field, `label` what every page calls it, `unit` how it is written,
    `higher_is_better` which change is an improvement."""

    key: str
    label: str
    unit: Unit
    higher_is_better: bool

    def text(self, value: float | None) -> str:
        """The value as written everywhere: a share in percent, anything else with three decimals; "–" for none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{value:.1%}" if self.unit == "share" else f"{value:.3f}"

    def interval_text(self, interval: list[float] | None) -> str:
        """A 95% interval as written everywhere ("44.8–53.6%"); "" for none."""
        if not interval:
            return ""
        low, high = interval
        if self.unit == "share":
            return f"{low * 100:.1f}–{high * 100:.1f}%"
        return f"{low:.3f}–{high:.3f}"

    def change(self, before: float | None, after: float | None) -> float | None:
        """after − before, or None where either is missing."""
        if before is None or after is None:
            return None
        return after - before

    def change_text(self, before: float | None, after: float | None) -> str:
        """The change as written everywhere: points for a share (+3.1 pts), else a signed value (−0.012)."""
        delta = self.change(before, after)
        if delta is None:
            return ""
        return f"{delta * 100:+.1f} pts" if self.unit == "share" else f"{delta:+.3f}"

    def improved(self, before: float | None, after: float | None) -> bool | None:
        """Whether the change is for the better (None: no change as written, or a value missing)."""
        delta = self.change(before, after)
        if delta is None or float(self.change_text(before, after).split()[0]) == 0:
            return None
        return delta > 0 if self.higher_is_better else delta < 0


def figure_field(label: str, unit: Unit, *, higher_is_better: bool, default: Any = None) -> Any:
    """A dataclass field that is a figure (default None: not measured; `dataclasses.MISSING`: required)."""
    spec = {"label": label, "unit": unit, "higher_is_better": higher_is_better}
    return dataclasses.field(default=default, metadata={"figure": spec})


def figures_of(result_type: type) -> dict[str, Figure]:
    """The figures a result type declares, by field name, in declaration order."""
    fields = dataclasses.fields(result_type)
    return {f.name: Figure(f.name, **f.metadata["figure"]) for f in fields if "figure" in f.metadata}


HEADLINE = ("clean_acc", "attacked_acc", "tcav_sensitivity", "r_bias")  # the figures a run is summed up by
