"""Inline SVG charts for the audit report: a scatter plot and a line chart with axes, ticks and labels, written as
plain SVG text (no script, no external resource), scaled by their viewBox so they never clip on screen or paper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Point", "line_chart", "scatter_chart"]

_W, _H = 480, 300  # the viewBox; the page scales it to its width
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 16, 16, 46
_INK, _GRID, _ACCENT, _MUTED = "#1f2933", "#d9dee3", "#c0392b", "#5b7083"
_CHAR_W = 6.2  # about the width of a character of the 11 px sans-serif labels


@dataclass(frozen=True)
class Point:
    """One point of a scatter: where, its label, and whether it is marked (filled) or highlighted (ringed)."""

    x: float
    y: float
    label: str = ""
    marked: bool = False
    highlighted: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]


def _axis(values: Sequence[float], floor: float | None = None, ceiling: float | None = None) -> list[float]:
    """Round tick values covering `values` (padded, more so when they are all equal, and kept within [floor,
    ceiling]); the first and last ticks are the axis' ends, so no tick falls outside the plot."""
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or max(abs(high) * 0.1, 0.05)
    low, high = low - pad, high + pad
    low = low if floor is None else max(low, floor)
    high = high if ceiling is None else min(high, ceiling)
    return _ticks(low, high)


def _tick_text(value: float) -> str:
    """A tick's label: short and without float noise."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.1e}"


class _Frame:
    """Maps data coordinates to the viewBox and draws the axes, grid and labels of one chart."""

    def __init__(self, x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> None:
        self.x_ticks, self.y_ticks, self.x_label, self.y_label = x_ticks, y_ticks, x_label, y_label
        self.x, self.y = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])

    def px(self, value: float) -> float:
        return _LEFT + (value - self.x[0]) / ((self.x[1] - self.x[0]) or 1) * (_W - _LEFT - _RIGHT)

    def py(self, value: float) -> float:
        return _H - _BOTTOM - (value - self.y[0]) / ((self.y[1] - self.y[0]) or 1) * (_H - _TOP - _BOTTOM)

    def axes(self, integer_x: bool = False) -> list[str]:
        parts = []
        for t in self.y_ticks:
            y = self.py(t)
            parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
            parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_text(t)}</text>')
        for t in self.x_ticks:
            if integer_x and t != int(t):
                continue
            x = self.px(t)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="{_GRID}"/>')
            parts.append(f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{_tick_text(t)}</text>')
        parts.append(
            f'<rect x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" height="{_H - _TOP - _BOTTOM}" '
            f'fill="none" stroke="{_INK}"/>'
        )
        parts.append(
            f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 8}" text-anchor="middle">{escape(self.x_label)}</text>'
        )
        middle = (_TOP + _H - _BOTTOM) / 2
        parts.append(
            f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">'
            f"{escape(self.y_label)}</text>"
        )
        return parts


def _svg(parts: list[str], title: str) -> str:
    """The chart's SVG element, with an accessible title."""
    return (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'font-family="sans-serif" font-size="11" fill="{_INK}"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def scatter_chart(points: Sequence[Point], x_label: str, y_label: str, title: str, unit_range: bool = True) -> str:
    """An SVG scatter of `points`: marked points filled, the highlighted one ringed, each with its label."""
    bounds = (0.0, 1.0) if unit_range else (None, None)
    frame = _Frame(_axis([p.x for p in points], *bounds), _axis([p.y for p in points], *bounds), x_label, y_label)
    parts = frame.axes()
    for p in points:
        x, y = frame.px(p.x), frame.py(p.y)
        fill = _ACCENT if p.marked else "white"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{_ACCENT}" stroke-width="1.5"/>')
        if p.highlighted:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{_INK}" stroke-width="1.5"/>')
        if p.label:  # right of the point, or left of it where it would run past the plot
            right = x + 8 + len(p.label) * _CHAR_W <= _W - _RIGHT
            anchor = f'x="{x + 8:.1f}"' if right else f'x="{x - 8:.1f}" text-anchor="end"'
            parts.append(f'<text {anchor} y="{y - 8:.1f}" fill="{_MUTED}">{escape(p.label)}</text>')
    return _svg(parts, title)


def line_chart(xs: Sequence[float], ys: Sequence[float], x_label: str, y_label: str, title: str) -> str:
    """An SVG line of `ys` over `xs` (integer x ticks, e.g. epochs), with a dot at each point; the y axis stops at
    zero when no value is negative (a loss)."""
    frame = _Frame(_axis(xs), _axis(ys, floor=0.0 if min(ys) >= 0 else None), x_label, y_label)
    parts = frame.axes(integer_x=True)
    coords = [(frame.px(x), frame.py(y)) for x, y in zip(xs, ys)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{_ACCENT}" stroke-width="2"/>')
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_ACCENT}"/>' for x, y in coords]
    return _svg(parts, title)
