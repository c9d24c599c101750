"""The page pieces of the audit report: its stylesheet (screen and print), how figures and dates are written, and
tables, notes, sections and inline PNG images as HTML text. Callers escape their text with `esc`; the pieces take
HTML."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from html import escape

import numpy as np

from backend.attribution import to_png
from backend.evaluation import Figure

__all__ = [
    "change",
    "confusion_table",
    "esc",
    "flatten",
    "image",
    "kv",
    "note",
    "num",
    "page",
    "pct",
    "section",
    "table",
    "tile",
    "when",
]

_THUMBNAIL_PX = 140  # displayed width of every example image on screen, so before and after line up
_PRINTED_PX = 100  # the same on paper: two before/after cards side by side on A4

_CSS = (
    f":root {{ --thumb: {_THUMBNAIL_PX}px; }} @media print {{ :root {{ --thumb: {_PRINTED_PX}px; }} }}"
    + """
:root { --ink: #1f2933; --muted: #5b7083; --line: #d9dee3; --good: #1e7b4f; --bad: #b03a2e; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--ink);
       font-size: 14px; line-height: 1.45; max-width: 980px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid var(--ink); padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub, .note, figcaption { color: var(--muted); } .note { font-size: 13px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 240px; font-weight: 500; }
.up { color: var(--good); } .down { color: var(--bad); }
.alert { border: 2px solid var(--bad); border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 200px; flex: 1; }
.card .label { color: var(--muted); font-size: 12px; } .card .value { font-size: 20px; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0 0 10px; } figcaption { font-size: 12px; }
figure.chart { flex: 1 1 420px; max-width: 480px; } svg.chart { width: 100%; height: auto; display: block; }
.examples { display: flex; flex-wrap: wrap; gap: 10px; }
.examples figure { margin: 0; width: var(--thumb); text-align: center; overflow-wrap: anywhere; }
.example { border: 1px solid var(--line); border-radius: 6px; padding: 6px; }
.example .images { display: flex; gap: 6px; }
img.thumb { width: var(--thumb); height: var(--thumb); object-fit: contain; display: block; }
img.pixels { image-rendering: pixelated; }
.confusion { font-size: 12px; } .confusion td.num { min-width: 44px; } .confusion thead th { max-width: 96px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11px; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  table, tr, figure, .example, .card, .cards, svg { break-inside: avoid; page-break-inside: avoid; }
  table.long { break-inside: auto; page-break-inside: auto; }
  .card { min-width: 150px; } .card .value { font-size: 15px; } figure.chart { flex: 1 1 300px; max-width: 345px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
)


def esc(value) -> str:
    """Any value as escaped HTML text."""
    return escape(str(value))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def change(figure: Figure, before: float | None, after: float | None) -> str:
    """After minus before as the figure writes it, coloured by whether it is an improvement."""
    text = figure.change_text(before, after)
    improved = figure.improved(before, after)
    if not text:
        return "–"
    return text if improved is None else f'<span class="{"up" if improved else "down"}">{text}</span>'


def when(seconds: float | None) -> str:
    """A timestamp in local time with its zone."""
    if seconds is None:
        return "–"
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of HTML cells under a plain-text header; columns in `numeric` are right-aligned."""

    def cell(tag: str, i: int, content: str) -> str:
        return f"<{tag}{' class=num' if i in numeric else ''}>{content}</{tag}>"

    head = "".join(cell("th", i, esc(h)) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv(pairs: Sequence[tuple[str, str]], long: bool = False) -> str:
    """A two-column table of plain-text names and HTML values; a `long` one may break across pages between rows."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv{" long" if long else ""}">{rows}</table>'


def note(content: str) -> str:
    return f'<p class="note">{content}</p>'


def alert(content: str) -> str:
    """A boxed warning the reader cannot miss (HTML content)."""
    return f'<div class="alert">{content}</div>'


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>' + "".join(parts) + "</section>"


def image(picture: np.ndarray, alt: str) -> str:
    """A uint8 RGB image as an inline PNG at its own size, displayed at the thumbnail size (small ones with crisp
    pixels), so every image of the report lines up whatever its resolution."""
    data = base64.b64encode(to_png(np.asarray(picture))).decode()
    pixels = " pixels" if picture.shape[0] < _THUMBNAIL_PX else ""
    return f'<img class="thumb{pixels}" src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def tile(picture: np.ndarray, caption: str) -> str:
    """An image with its caption."""
    return f"<figure>{image(picture, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    """A nested config dict as (dotted name, value as JSON code) pairs."""
    pairs = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            pairs += flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", f"<code>{esc(json.dumps(value))}</code>"))
    return pairs


def confusion_table(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """A confusion matrix (rows: true class, columns: predicted), each cell shaded by its share of its row."""
    rows = []
    for name, counts in zip(classes, matrix):
        total = sum(counts) or 1
        cells = "".join(
            f'<td class="num" style="background: rgba(192, 57, 43, {0.6 * n / total:.2f})">{n}</td>' for n in counts
        )
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    head = "".join(f'<th class="num">{esc(c).replace("_", "_<wbr>")}</th>' for c in classes)
    return f'<table class="confusion"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def page(title: str, body: Sequence[str]) -> str:
    """The whole document: the stylesheet inline, nothing loaded from anywhere."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
