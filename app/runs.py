"""Runs: every correction run side by side. A table of their figures (sort by any column, filter by dataset,
concept, method and status), and the runs you pick compared: figures next to each other and loss curves overlaid.
This page's session keys start with `runs_`."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app.resources import executor
from backend.runs import FILTERS, RUN_STATUSES, filter_rows, loss_histories, run_rows
from components.plots import loss_overlay

_PERCENT = ("clean_acc before", "clean_acc after", "attacked_acc before", "attacked_acc after")


def render() -> None:
    st.title("Runs")
    store = executor().store
    rows = run_rows(store.list()[::-1])  # newest first
    if not rows:
        st.info("No correction run yet: launch one on **Correct**.")
        st.stop()
    chosen = {}
    for col, column in zip(st.columns(len(FILTERS) + 1), (*FILTERS, "status")):
        values = sorted({str(r[column]) for r in rows if r[column] is not None})
        if column == "status":
            values = [s for s in RUN_STATUSES if s in values]
        chosen[column] = col.multiselect(column, values, key=f"runs_filter_{column}", placeholder="all")
    status = chosen.pop("status")
    shown = [r for r in filter_rows(rows, **chosen) if not status or r["status"] in status]
    st.caption(f"{len(shown)} of {len(rows)} runs · click a column header to sort")
    table = pd.DataFrame(shown, columns=list(rows[0]))
    table["created"] = [time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in table["created"]]
    st.dataframe(
        table,
        hide_index=True,
        key="runs_table",
        column_config={
            **{c: st.column_config.NumberColumn(c, format="percent") for c in _PERCENT},
            "clean_acc change": st.column_config.NumberColumn("clean change", format="%+.3f"),
            "attacked_acc change": st.column_config.NumberColumn("attacked change", format="%+.3f"),
            "lam": st.column_config.NumberColumn("λ", format="%g"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
        },
    )
    _compare(store, shown)


_PICKS = "runs_compare_picks"  # the runs picked for comparison, also those the filters hide right now


def _label(row: dict) -> str:
    return f"{row['name']} ({row['run'][-6:]})"


def _compare(store, shown: list[dict]) -> None:
    """The picked runs' figures next to each other and their loss curves on one chart."""
    st.subheader("Compare")
    if not shown:  # leave the picks alone: they come back with the runs when the filter is cleared
        st.caption("No run matches the filters.")
        return
    by_id = {r["run"]: r for r in shown}
    state = st.session_state
    if state.get(_PICKS) is None:  # the newest finished runs until the user picks
        state[_PICKS] = [r["run"] for r in shown if r["status"] == "succeeded"][:3]
    hidden = [run_id for run_id in state[_PICKS] if run_id not in by_id]  # picks a filter hides stay picked
    state["runs_compare"] = [run_id for run_id in state[_PICKS] if run_id in by_id]
    picked = st.multiselect(
        "Runs to compare",
        list(by_id),
        key="runs_compare",
        format_func=lambda i: _label(by_id[i]),
        max_selections=8,
        on_change=lambda: state.__setitem__(_PICKS, hidden + state["runs_compare"]),
    )
    if not picked:
        st.caption("Pick runs above to compare their figures and loss curves.")
        return
    figures = [c for c in shown[0] if c.endswith((" before", " after", " change"))] + ["epochs", "seconds"]
    side = pd.DataFrame({_label(by_id[i]): [by_id[i][c] for c in figures] for i in picked}, index=figures)
    st.dataframe(side, key="runs_side_by_side", column_config={"_index": st.column_config.TextColumn("figure")})
    metric = st.radio("Curve", ["loss", "ce", "penalty"], horizontal=True, key="runs_curve")
    histories = {_label(by_id[i]): h for i, h in loss_histories(store, picked).items() if h}
    if histories:
        st.plotly_chart(loss_overlay(histories, metric), key="runs_loss_overlay")
    else:
        st.caption("None of these runs has trained an epoch yet (or their method does not train).")


if __name__ == "__main__":
    render()
