"""Inputs for the fields of a frozen config dataclass, so a method's knobs are declared once (in its config)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping

import streamlit as st

__all__ = ["config_inputs"]


def config_inputs(
    config: type,
    *,
    key: str,
    helps: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    skip: tuple[str, ...] = (),
    columns: int = 3,
) -> dict:
    """One input per field of `config` (Literal -> select box, bool -> toggle, float/int -> number), starting at
    the field's default; returns {field: value}. `helps[field]` is the input's help text, `labels[field]` its label
    (default: the field name)."""
    hints = typing.get_type_hints(config)
    chosen = [f for f in dataclasses.fields(config) if f.name not in skip]
    values: dict = {}
    cols = st.columns(columns) if chosen else []
    for n, field in enumerate(chosen):
        col, hint = cols[n % columns], hints[field.name]
        label = (labels or {}).get(field.name, field.name.replace("_", " "))
        widget_key, help_ = f"{key}_{field.name}", helps.get(field.name)
        if typing.get_origin(hint) is typing.Literal:
            options = list(typing.get_args(hint))
            values[field.name] = col.selectbox(
                label, options, index=options.index(field.default), key=widget_key, help=help_
            )
        elif hint is bool:
            values[field.name] = col.toggle(label, value=field.default, key=widget_key, help=help_)
        elif hint is int:
            values[field.name] = int(
                col.number_input(label, value=field.default, min_value=0, step=1, key=widget_key, help=help_)
            )
        elif hint is float:
            values[field.name] = float(
                col.number_input(
                    label, value=float(field.default), min_value=0.0, format="%g", key=widget_key, help=help_
                )
            )
        else:
            raise TypeError(f"{config.__name__}.{field.name}: no input for {hint}")
    return values
