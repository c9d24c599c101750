"""Plotly figures built from backend results."""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["class_balance_chart"]


def class_balance_chart(counts: dict[str, dict[str, int]]) -> go.Figure:
    """Grouped bars: samples per class (x) for each split (colour). `counts[split][class] -> n`."""
    fig = go.Figure()
    for split, per_class in counts.items():
        fig.add_bar(name=split, x=list(per_class), y=list(per_class.values()))
    fig.update_layout(
        barmode="group",
        height=280,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis_title="samples",
        legend_title_text="split",
    )
    return fig
