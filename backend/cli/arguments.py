"""Command-line arguments built from the configs' declared options (`backend.options`): one argument per option,
its help ending with the default, and the config the parsed command line describes."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from backend.options import Option, nested_of, options_of

__all__ = ["add_config", "add_option", "add_options", "config_from", "from_args", "given_options", "help_text", "parse"]

_FROM_ARGS = "from_args"


def help_text(opt: Option) -> str:
    """The option's help, ending with its default unless the help already says what it is (or it has none)."""
    if "default" in opt.help or opt.required or opt.switch or opt.default is None or opt.default == ():
        return opt.help
    default = f"{opt.default:g}" if opt.kind is float else opt.default
    return f"{opt.help} (default {default})"


def add_option(parser: argparse.ArgumentParser, opt: Option, help: str) -> None:
    """One argument for a declared option; its default is None, so only what the user gave is passed on."""
    if opt.positional:
        names, how = [opt.name], {} if opt.required else {"nargs": "?"}
    else:
        names = sorted([opt.flag, *opt.flags], key=lambda flag: flag.startswith("--"))  # -v before --verbose
        how = {"dest": opt.name, "required": opt.required}
    if opt.switch:
        how["action"] = "store_true"
    elif opt.kind is bool:
        how["action"] = argparse.BooleanOptionalAction
    else:
        how |= {"type": opt.kind, "choices": opt.choices, "action": "append" if opt.repeated else "store"}
    if opt.metavar:
        how["metavar"] = opt.metavar
    parser.add_argument(*names, default=None, help=help, **how)


def add_options(parser: argparse.ArgumentParser, config: type, *, skip: tuple[str, ...] = ()) -> None:
    """An argument per declared option of `config`, its help ending with the default."""
    for opt in options_of(config):
        if opt.name not in skip:
            add_option(parser, opt, help_text(opt))


# The shared options (`backend.options`) come first in a command's help, in this order; JSON output comes last.
_FIRST, _LAST = ("workspace", "verbose", "checkpoint", "dataset"), ("json",)


def add_config(parser: argparse.ArgumentParser, config: type) -> None:
    """An argument per declared option of `config` and of the configs nested in it: the shared options first, then
    the command's own, the nested configs' and the JSON output."""
    ordered = sorted(options_of(config), key=lambda o: _FIRST.index(o.name) if o.name in _FIRST else len(_FIRST))
    for opt in ordered:
        if opt.name not in _LAST:
            add_option(parser, opt, help_text(opt))
    for held in nested_of(config):
        add_config(parser, held.config)
    for opt in ordered:
        if opt.name in _LAST:
            add_option(parser, opt, help_text(opt))


def given_options(args: argparse.Namespace, config: type) -> dict:
    """The declared options of `config` that the command line gave, by field name."""
    given = {o: getattr(args, o.name, None) for o in options_of(config)}
    return {o.name: tuple(v) if o.repeated else v for o, v in given.items() if v is not None}


def from_args(read: Callable[[argparse.Namespace], Any]) -> Any:
    """A field of a command's config read from the parsed command line by `read`: for arguments declared by hand
    (a correction job's)."""
    return dataclasses.field(default=None, metadata={_FROM_ARGS: read})


def config_from(args: argparse.Namespace, config: type):
    """The `config` the parsed command line describes: each option as given, else its default; nested configs
    alike, over their base."""
    values = given_options(args, config)
    for held in nested_of(config):
        if held.base is None:
            values[held.name] = config_from(args, held.config)
        else:
            values[held.name] = dataclasses.replace(held.base(values), **given_options(args, held.config))
    for f in dataclasses.fields(config):
        if _FROM_ARGS in f.metadata:
            values[f.name] = f.metadata[_FROM_ARGS](args)
    return config(**values)


def parse(config: type, argv: Sequence[str] | None = None, **parser: Any):
    """`config` from a command line (default: this process's) of its options alone; `parser`: ArgumentParser's
    keywords (prog, description)."""
    built = argparse.ArgumentParser(**parser)
    add_config(built, config)
    return config_from(built.parse_args(argv), config)
