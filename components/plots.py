"""Plotly figures built from backend results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "before_after_bars",
    "class_balance_chart",
    "cluster_scatter",
    "confusion_heatmap",
    "divergence_heatmap",
    "embedding_scatter",
    "loss_chart",
    "loss_overlay",
    "roc_chart",
    "score_histogram",
    "selected_rows",
    "tradeoff_scatter",
]


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


_MARGIN = dict(l=10, r=10, t=30, b=10)


_LABEL_COLOURS = {"unlabelled": "#c8c8c8", "clean": "#2a9d8f", "artifact": "#c0392b"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#2ca02c")


def embedding_scatter(
    points: np.ndarray,
    values: Sequence,
    colour: str,
    sample_ids: Sequence[str],
    categories: Sequence[str] | None = None,
) -> go.Figure:
    """2-D embedding (N, 2), coloured by a category or a score; hovering shows the sample id. Each point carries
    its row index as customdata, so a selection maps back to samples whatever the trace. Categories keep their
    colour between reruns (`categories` fixes their order, e.g. the classes); annotation labels have their own
    colours, unlabelled points grey and drawn first, under the labelled ones."""
    values = list(values)
    fig = go.Figure()
    if values and isinstance(values[0], str):
        order = list(categories) if categories else sorted(set(values))
        if set(values) <= set(_LABEL_COLOURS):
            order, colours = list(_LABEL_COLOURS), _LABEL_COLOURS
        else:
            colours = {c: _PALETTE[k % len(_PALETTE)] for k, c in enumerate(order)}
        for category in order:
            rows = [i for i, v in enumerate(values) if v == category]
            if not rows:
                continue
            fig.add_scattergl(
                x=points[rows, 0],
                y=points[rows, 1],
                mode="markers",
                name=category,
                marker=dict(size=5, color=colours[category]),
                text=[sample_ids[i] for i in rows],
                customdata=[[i] for i in rows],
                hovertemplate="%{text}<extra>" + category + "</extra>",
            )
    else:
        fig.add_scattergl(
            x=points[:, 0],
            y=points[:, 1],
            mode="markers",
            name=colour,
            text=list(sample_ids),
            customdata=[[i] for i in range(len(points))],
            marker=dict(size=5, color=values, colorscale="RdBu_r", colorbar=dict(title=colour)),
            hovertemplate="%{text}: %{marker.color:.3f}<extra></extra>",
        )
    fig.update_layout(height=520, margin=_MARGIN, dragmode="lasso", legend_title_text=colour)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def score_histogram(scores: np.ndarray, labels: np.ndarray) -> go.Figure:
    """Overlaid histograms of CAV scores of the samples labelled artifact (1) and clean (0)."""
    fig = go.Figure()
    for value, name, colour in ((0, "clean", "#2a9d8f"), (1, "artifact", "#c0392b")):
        fig.add_histogram(x=scores[labels == value], name=name, marker_color=colour, opacity=0.65, nbinsx=30)
    fig.update_layout(barmode="overlay", height=300, margin=_MARGIN, xaxis_title="CAV score", yaxis_title="samples")
    return fig


def roc_chart(fpr: np.ndarray, tpr: np.ndarray, auc: float) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"CAV (AUC {auc:.3f})", line=dict(color="#c0392b"))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="gray"))
    fig.update_layout(height=300, margin=_MARGIN, xaxis_title="false positive rate", yaxis_title="true positive rate")
    return fig


def divergence_heatmap(similarity: dict[str, dict[str, float]]) -> go.Figure:
    """Pairwise cosine similarity between CAV kinds."""
    names = list(similarity)
    z = [[similarity[a][b] for b in names] for a in names]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu_r", texttemplate="%{z:.2f}"))
    fig.update_layout(height=320, margin=_MARGIN, yaxis_autorange="reversed")
    return fig


def confusion_heatmap(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> go.Figure:
    """Counts of true (rows) vs predicted (columns) classes, each row shaded by its share."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=list(classes),
            y=list(classes),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=counts.astype(int),
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images (%{z:.0%})<extra></extra>",
            showscale=False,
        )
    )
    fig.update_layout(
        title=title, height=300, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="predicted", yaxis_title="true"
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def before_after_bars(rows: dict[str, dict[str, float | None]]) -> go.Figure:
    """Grouped bars of figures (x) before and after correction (colour). `rows[figure] -> {"before", "after"}`."""
    fig = go.Figure()
    names = list(rows)
    for when, colour in (("before", "#95a5a6"), ("after", "#2a9d8f")):
        fig.add_bar(name=when, x=names, y=[rows[n][when] for n in names], marker_color=colour)
    fig.update_layout(barmode="group", height=320, margin=_MARGIN)
    return fig


def tradeoff_scatter(rows: Sequence[dict]) -> go.Figure:
    """A sweep's runs as clean vs attacked accuracy (the attacked figure that exists: planted, supplied or
    transplanted, named on the axis), Pareto-best runs highlighted."""
    fig = go.Figure()
    for best, name, symbol in ((False, "run", "circle"), (True, "Pareto-best", "star")):
        chosen = [r for r in rows if r["pareto"] == best and r["clean_acc"] is not None]
        fig.add_scatter(
            x=[r["clean_acc"] for r in chosen],
            y=[r["attacked_acc"] for r in chosen],
            mode="markers+text",
            name=name,
            text=[f"λ={r['lam']:g}" if r["lam"] is not None else r["method"] for r in chosen],
            textposition="top center",
            marker=dict(size=12, symbol=symbol),
        )
    fig.update_layout(
        height=360,
        margin=_MARGIN,
        xaxis_title="clean accuracy",
        yaxis_title="attacked accuracy"
        + "".join(sorted({f" ({r['attack_source']})" for r in rows if r.get("attack_source")})),
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
    )
    return fig


def loss_chart(history: Sequence[dict]) -> go.Figure:
    """Loss, cross-entropy and penalty per epoch of a correction run."""
    fig = go.Figure()
    epochs = [h["epoch"] for h in history]
    for name in ("loss", "ce", "penalty"):
        if history and name in history[0]:
            fig.add_scatter(x=epochs, y=[h[name] for h in history], mode="lines+markers", name=name)
    fig.update_layout(height=280, margin=_MARGIN, xaxis_title="epoch", xaxis_dtick=1)
    # log axis labelled with whole values (plotly's default labels minor ticks by their first digit: "5 2 1 5 2 0.1")
    fig.update_yaxes(type="log", tickformat=".2~g", title="per sample")
    return fig


def loss_overlay(histories: dict[str, Sequence[dict]], metric: str = "loss") -> go.Figure:
    """One line per run of `metric` (loss, ce or penalty) per epoch: several runs' training compared."""
    fig = go.Figure()
    for name, history in histories.items():
        points = [h for h in history if h.get(metric) is not None]
        fig.add_scatter(x=[h["epoch"] for h in points], y=[h[metric] for h in points], mode="lines+markers", name=name)
    fig.update_layout(height=320, margin=_MARGIN, xaxis_title="epoch", legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(type="log", tickformat=".2~g", title=f"{metric} per sample")
    return fig


def selected_rows(points: Sequence[dict]) -> list[int]:
    """Row indices of the points of a plotly selection made on `embedding_scatter`."""
    rows = set()
    for point in points:
        data = point.get("customdata")
        if data is not None:
            rows.add(int(data[0] if isinstance(data, list | tuple) else data))
    return sorted(rows)


def cluster_scatter(points: np.ndarray, labels: np.ndarray, sample_ids: Sequence[str]) -> go.Figure:
    """A 2-D embedding (N, 2) of samples, one colour per cluster (labels (N,)), the sample id on hover."""
    figure = go.Figure()
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        members = labels == c
        figure.add_trace(
            go.Scattergl(
                x=points[members, 0],
                y=points[members, 1],
                mode="markers",
                name=f"cluster {c + 1} ({members.sum()})",
                text=[sid for sid, m in zip(sample_ids, members) if m],
                hovertemplate="%{text}<extra></extra>",
                marker={"size": 5, "opacity": 0.7},
            )
        )
    figure.update_layout(
        height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Spectral embedding of the explanations"
    )
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    return figure
