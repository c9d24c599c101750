"""Inputs for the declared options of a config dataclass (`backend.options`), so a knob's default, choices, label and
help text are written once, on the config."""

from __future__ import annotations

import streamlit as st

from backend.options import options_of

__all__ = ["config_inputs"]


def config_inputs(config: type, *, key: str, skip: tuple[str, ...] = (), columns: int = 3) -> dict:
    """One input per declared option of `config` (choices -> select box, bool -> toggle, float/int -> number, text ->
    text field, empty meaning None where None is allowed), starting at the option's default; returns {field: value}.
    Widget keys are `<key>_<field>`; the values outlive a visit to another page."""
    chosen = [o for o in options_of(config) if o.name not in skip]
    values: dict = {}
    cols = st.columns(columns) if chosen else []
    for n, opt in enumerate(chosen):
        col, widget_key = cols[n % columns], f"{key}_{opt.name}"
        if opt.choices is not None:
            options = list(opt.choices)
            values[opt.name] = col.selectbox(
                opt.label,
                options,
                index=options.index(opt.default),
                key=widget_key,
                help=opt.help,
                persist_state="session",
            )
        elif opt.kind is bool:
            values[opt.name] = col.toggle(
                opt.label, value=opt.default, key=widget_key, help=opt.help, persist_state="session"
            )
        elif opt.kind is int:
            values[opt.name] = int(
                col.number_input(
                    opt.label,
                    value=opt.default,
                    min_value=0,
                    step=1,
                    key=widget_key,
                    help=opt.help,
                    persist_state="session",
                )
            )
        elif opt.kind is float:
            values[opt.name] = float(
                col.number_input(
                    opt.label,
                    value=float(opt.default),
                    min_value=0.0,
                    format="%g",
                    key=widget_key,
                    help=opt.help,
                    persist_state="session",
                )
            )
        elif opt.kind is str:
            text = col.text_input(
                opt.label, value=opt.default or "", key=widget_key, help=opt.help, persist_state="session"
            )
            values[opt.name] = text.strip() or (None if opt.optional else opt.default)
        else:
            raise TypeError(f"{config.__name__}.{opt.name}: no input for {opt.kind.__name__}")
    return values
