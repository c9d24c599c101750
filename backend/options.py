"""Options declared once: a config dataclass field carries its default, its choices (a `Literal` type, or a
registry given in the metadata) and its help text; the CLI's arguments and the dashboard's forms are built from
these declarations, and `check_choices` validates them. The options every command shares (workspace, JSON output,
model, dataset, layer) are declared here once, as small configs a command's config inherits."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError

__all__ = [
    "CommonOptions",
    "DatasetOption",
    "JsonOutput",
    "LayerOption",
    "ModelOption",
    "Nested",
    "Option",
    "check_choices",
    "described",
    "nested",
    "nested_of",
    "option",
    "options_of",
    "switch",
]

MISSING = dataclasses.MISSING


def option(
    default: Any = MISSING,
    *,
    help: str,
    label: str | None = None,
    choices: Callable[[], Iterable[str]] | None = None,
    flags: tuple[str, ...] = (),
    default_factory: Callable[[], Any] | dataclasses._MISSING_TYPE = MISSING,
    flag: str | None = None,
    metavar: str | None = None,
    positional: bool = False,
) -> Any:
    """A dataclass field with its help text; `label` names it in forms (default: the field name in words),
    `choices` lists the valid values of a field whose type is not a Literal (a registry's names), `flags` adds
    command-line spellings besides `--field-name`, `flag` replaces that spelling (where the name is a keyword:
    `--class`), `metavar` names the value in the help, `positional` makes it an argument given by place. Without a
    default the option is required; a `tuple[T, ...]` option is given once per value."""
    metadata = {"help": help, "label": label, "choices": choices, "flags": flags, "flag": flag, "metavar": metavar}
    metadata |= {"positional": positional, "switch": False}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def switch(*, help: str, flags: tuple[str, ...] = ()) -> Any:
    """A bool option that is off unless given: `--name` alone, without the `--no-name` of other bool options."""
    plain = option(False, help=help, flags=flags)
    return dataclasses.field(default=False, metadata=dict(plain.metadata, switch=True))


@dataclass(frozen=True)
class Nested:
    """A config held in a field of another, its options beside the holder's on the command line; `base` makes the
    config the given options change from the holder's given options (default: the config's defaults)."""

    name: str
    config: type
    base: Callable[[dict], Any] | None


def nested(config: type, *, base: Callable[[dict], Any] | None = None) -> Any:
    """A field holding a `config` whose declared options join the holder's (`TrainOptions.train: TrainConfig`);
    built from the options given over `base(given)` (`given`: the holder's own options given, by name) or over the
    config's defaults."""
    return dataclasses.field(default_factory=config, metadata={"nested": config, "base": base})


@dataclass(frozen=True)
class Option:
    """One declared field: what a CLI argument or a form input needs to know about it."""

    name: str
    kind: type  # bool, int, float, str (choices or free text); of each value where `repeated`
    default: Any  # dataclasses.MISSING where `required`
    help: str
    label: str
    choices: tuple | None
    optional: bool  # None is a valid value
    flags: tuple[str, ...]
    required: bool = False
    positional: bool = False
    repeated: bool = False  # tuple[kind, ...]: one value per use of the flag
    switch: bool = False
    metavar: str | None = None
    spelling: str | None = None  # the flag instead of --field-name

    @property
    def flag(self) -> str:
        return self.spelling or "--" + self.name.replace("_", "-")


def _base_type(hint) -> tuple[type | None, tuple | None, bool, bool]:
    """(scalar type, Literal choices, whether None is allowed, whether a tuple of them) of a type hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    repeated = typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (...,)
    if repeated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        return type(values[0]), values, optional, repeated
    if hint in (bool, int, float, str):
        return hint, None, optional, repeated
    return None, None, optional, repeated


def options_of(config: type) -> list[Option]:
    """The declared fields of a config class (those made with `option`) in declaration order."""
    hints = typing.get_type_hints(config)
    found = []
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        meta = f.metadata
        kind, choices, optional, repeated = _base_type(hints[f.name])
        if kind is None:
            raise TypeError(f"{config.__name__}.{f.name}: options must be bool, int, float, str, a Literal or a tuple")
        if meta["choices"] is not None:
            choices = tuple(meta["choices"]())
        default = f.default if f.default_factory is MISSING else f.default_factory()
        label = meta["label"] or f.name.replace("_", " ")
        found.append(
            Option(
                f.name,
                kind,
                default,
                meta["help"],
                label,
                choices,
                optional,
                meta["flags"],
                required=default is MISSING,
                positional=meta["positional"],
                repeated=repeated,
                switch=meta["switch"],
                metavar=meta["metavar"],
                spelling=meta["flag"],
            )
        )
    return found


def nested_of(config: type) -> list[Nested]:
    """The configs held in fields of `config` (made with `nested`), in declaration order."""
    return [
        Nested(f.name, f.metadata["nested"], f.metadata["base"])
        for f in dataclasses.fields(config)
        if "nested" in f.metadata
    ]


def described(config: type) -> tuple[str, str | None]:
    """What a command's (or a benchmark's) options say it does: the first paragraph of their docstring (its help, on
    one line) and the other paragraphs (its description; None without)."""
    doc = config.__doc__ or ""
    if not doc.strip() or doc.startswith(f"{config.__name__}("):  # none, or the signature dataclass writes
        raise TypeError(f"{config.__name__}: the options of a command say what it does in their docstring")
    first, *rest = (" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))
    return first, "\n\n".join(rest) or None


def check_choices(config) -> None:
    """Raise ConfigError for a field whose value is not one of its choices (Literal or registry)."""
    for opt in options_of(type(config)):
        value = getattr(config, opt.name)
        if opt.choices is not None and value not in opt.choices and not (opt.optional and value is None):
            raise ConfigError(f"unknown {opt.label} {value!r}; choose one of {', '.join(map(str, opt.choices))}")


# -- the options every command shares: a command's config inherits those it takes ------------------------------


@dataclass(frozen=True, kw_only=True)
class CommonOptions:
    """Every command's: the workspace it works in and how much it logs."""

    workspace: str | None = option(None, help="workspace folder (default $CLARC_WORKSPACE or ./workspace)")
    verbose: bool = switch(help="log progress details", flags=("-v",))


@dataclass(frozen=True, kw_only=True)
class JsonOutput:
    """A command that produces results writes them as JSON where asked."""

    json: str | None = option(None, help="write the results as JSON to this file")


@dataclass(frozen=True, kw_only=True)
class DatasetOption:
    """The dataset a command works on."""

    dataset: str | None = option(None, help="dataset spec (default: the one the model was trained on)")


@dataclass(frozen=True, kw_only=True)
class ModelOption:
    """The model a command works on."""

    checkpoint: str | None = option(None, help="model (default: the shipped default model)")

    @property
    def checkpoint_path(self) -> Path:
        """The --checkpoint, else the shipped default model."""
        return Path(self.checkpoint) if self.checkpoint else DEFAULT_CHECKPOINT


@dataclass(frozen=True, kw_only=True)
class LayerOption:
    """The layer a command's CAV lives in."""

    layer: str | None = option(None, help="the CAV layer (default: the architecture's default CAV layer)")

    def layer_of(self, model) -> str:
        """The --layer, else the default CAV layer of `model` (a LoadedModel)."""
        return self.layer or model.default_layer
