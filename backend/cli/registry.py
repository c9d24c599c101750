"""The commands of `python -m backend`, declared where they run: `@command("cavs list", CavsListOptions)` on the
function that takes the command's config (built from the command line) and returns the exit code; the config's
docstring is the command's help (its first paragraph) and description (the rest)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from backend.cli.arguments import add_config, config_from
from backend.options import described

__all__ = ["Command", "add_commands", "command", "group", "registered"]


@dataclass(frozen=True)
class Command:
    """One command: its name (a group's commands after the group's name: `runs submit`), the function that runs it
    on its options (a config built from the command line), the config class, its help, and `arguments`, a function
    adding arguments declared by hand besides the config's (a correction job's)."""

    name: str
    run: Callable[[Any], int]
    options: type
    help: str
    description: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


@dataclass(frozen=True)
class _Group:
    help: str
    metavar: str


_COMMANDS: dict[str, Command] = {}
_GROUPS: dict[str, _Group] = {}


def command(name: str, options: type, *, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Declare the decorated function as the command `name` taking `options` (and `arguments` declared by hand)."""
    help, description = described(options)

    def decorate(run: Callable[[Any], int]):
        _COMMANDS[name] = Command(name, run, options, help, description, arguments)
        return run

    return decorate


def group(name: str, *, help: str, metavar: str = "VERB") -> None:
    """Declare a group of commands (`runs`, `cavs`, `bench`): its commands are named `NAME VERB`."""
    _GROUPS[name] = _Group(help, metavar)


def registered() -> list[Command]:
    """The declared commands, in the order they were declared."""
    return list(_COMMANDS.values())


def add_commands(sub: argparse._SubParsersAction, commands: Iterable[Command]) -> None:
    """A parser per command (inside its group's), its arguments built from its options."""
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd in commands:
        *within, name = cmd.name.split()
        target = sub
        if within:
            (owner,) = within
            if owner not in groups:
                declared = _GROUPS[owner]
                parser = sub.add_parser(owner, help=declared.help)
                groups[owner] = parser.add_subparsers(dest="verb", required=True, metavar=declared.metavar)
            target = groups[owner]
        parser = target.add_parser(name, help=cmd.help, description=cmd.description)
        add_config(parser, cmd.options)
        if cmd.arguments is not None:
            cmd.arguments(parser)
        parser.set_defaults(run=partial(_run, cmd))


def _run(cmd: Command, args: argparse.Namespace) -> int:
    return cmd.run(config_from(args, cmd.options))
