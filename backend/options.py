"""Options declared once: a config dataclass field carries its default, its choices (a `Literal` type, or a
registry given in the metadata) and its help text; the CLI's arguments and the dashboard's forms are built from
these declarations, and `check_choices` validates them."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from backend.errors import ConfigError

__all__ = ["Option", "check_choices", "option", "options_of"]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    label: str | None = None,
    choices: Callable[[], Iterable[str]] | None = None,
    flags: tuple[str, ...] = (),
    default_factory: Callable[[], Any] | dataclasses._MISSING_TYPE = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its help text; `label` names it in forms (default: the field name in words),
    `choices` lists the valid values of a field whose type is not a Literal (a registry's names), `flags` adds
    command-line spellings besides `--field-name`."""
    metadata = {"help": help, "label": label, "choices": choices, "flags": flags}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One declared field: what a CLI argument or a form input needs to know about it."""

    name: str
    kind: type  # bool, int, float, str (choices or free text)
    default: Any
    help: str
    label: str
    choices: tuple | None
    optional: bool  # None is a valid value
    flags: tuple[str, ...]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _base_type(hint) -> tuple[type | None, tuple | None, bool]:
    """(scalar type, Literal choices, whether None is allowed) of a type hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        return type(values[0]), values, optional
    if hint in (bool, int, float, str):
        return hint, None, optional
    return None, None, optional


def options_of(config: type) -> list[Option]:
    """The declared fields of a config class (those made with `option`) in declaration order."""
    hints = typing.get_type_hints(config)
    found = []
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        kind, choices, optional = _base_type(hints[f.name])
        if kind is None:
            raise TypeError(f"{config.__name__}.{f.name}: options must be bool, int, float, str or a Literal")
        if f.metadata["choices"] is not None:
            choices = tuple(f.metadata["choices"]())
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        label = f.metadata["label"] or f.name.replace("_", " ")
        found.append(Option(f.name, kind, default, f.metadata["help"], label, choices, optional, f.metadata["flags"]))
    return found


def check_choices(config) -> None:
    """Raise ConfigError for a field whose value is not one of its choices (Literal or registry)."""
    for opt in options_of(type(config)):
        value = getattr(config, opt.name)
        if opt.choices is not None and value not in opt.choices and not (opt.optional and value is None):
            raise ConfigError(f"unknown {opt.label} {value!r}; choose one of {', '.join(map(str, opt.choices))}")
