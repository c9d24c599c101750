"""Options declared once on configs (`backend.options`) become the command line (`backend.cli.arguments`): required,
positional, repeatable, switch and nested options parse into the config; every command's and every benchmark's
arguments come from its config, keep their spellings and defaults, and parse into the config's defaults when none is
given; a benchmark's typed result writes its JSON as declared."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from backend.bench import BenchOptions, BenchResult, benchmarks, printed
from backend.cli import build_parser
from backend.cli.arguments import config_from, from_args, help_text, parse
from backend.cli.bench import bench_commands
from backend.cli.registry import registered
from backend.options import CommonOptions, nested, nested_of, option, options_of, switch


@dataclass(frozen=True)
class _Inner:
    steps: int = option(3, help="how many steps")
    rate: float = option(1e-3, help="learning rate")
    mode: Literal["fast", "slow"] = option("fast", help="how to go (default: fast)")


@dataclass(frozen=True, kw_only=True)
class _Outer(CommonOptions):
    target: str = option(help="what to work on", positional=True)
    out: str = option(help="where to write")
    tags: tuple[str, ...] = option((), help="a tag (repeatable)", flag="--tag", metavar="TAG")
    quick: bool = switch(help="a quick run")
    keep: bool = option(True, help="keep the files")
    inner: _Inner = nested(_Inner, base=lambda given: _Inner(steps=1) if given.get("quick") else _Inner())
    raw: str | None = from_args(lambda args: args.out.upper())


def test_options_parse_into_the_config_with_its_defaults():
    opts = parse(_Outer, ["thing", "--out", "x"])
    assert opts == _Outer(target="thing", out="x", raw="X")
    assert (opts.tags, opts.quick, opts.keep, opts.inner, opts.workspace, opts.verbose) == (
        (),
        False,
        True,
        _Inner(),
        None,
        False,
    )
    opts = parse(_Outer, ["t", "--out", "x", "--tag", "a", "--tag", "b", "--no-keep", "-v", "--mode", "slow"])
    assert (opts.tags, opts.keep, opts.verbose, opts.inner.mode) == (("a", "b"), False, True, "slow")


def test_a_nested_config_changes_its_base_by_the_options_given():
    assert parse(_Outer, ["t", "--out", "x", "--quick"]).inner == _Inner(steps=1)
    # an option given is taken even where it equals the plain default
    assert parse(_Outer, ["t", "--out", "x", "--quick", "--steps", "3"]).inner == _Inner(steps=3)
    assert parse(_Outer, ["t", "--out", "x", "--rate", "0.5"]).inner == _Inner(rate=0.5)


def test_a_missing_required_option_or_a_bad_choice_is_a_usage_error(capsys):
    for argv, message in (
        (["t"], "the following arguments are required: --out"),
        ([], "required: target, --out"),
        (["t", "--out", "x", "--mode", "sideways"], "invalid choice: 'sideways'"),
        (["t", "--out", "x", "--steps", "many"], "invalid int value"),
    ):
        with pytest.raises(SystemExit) as done:
            parse(_Outer, argv)
        assert done.value.code == 2 and message in capsys.readouterr().err, argv


def test_the_declarations_say_what_the_command_line_needs():
    found = {o.name: o for o in options_of(_Outer)}
    assert found["target"].positional and found["target"].required and found["out"].required
    assert found["tags"].repeated and found["tags"].kind is str and found["tags"].flag == "--tag"
    assert found["quick"].switch and not found["keep"].switch and found["verbose"].flags == ("-v",)
    assert "inner" not in found and "raw" not in found
    assert [(n.name, n.config) for n in nested_of(_Outer)] == [("inner", _Inner)]
    inner = {o.name: o for o in options_of(_Inner)}
    assert help_text(inner["steps"]) == "how many steps (default 3)"
    assert help_text(inner["rate"]) == "learning rate (default 0.001)"
    assert help_text(inner["mode"]) == "how to go (default: fast)"  # says its default itself
    assert help_text(found["quick"]) == "a quick run" and help_text(found["out"]) == "where to write"


def _parser(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


# The flags each command declares itself (those of the library's configs, and a correction job's, have their own
# owners), as scripts spell them: none may go.
FLAGS = {
    "train": "--quick --out --json",
    "info": "--dataset --checkpoint --json",
    "import-checkpoint": "--arch --classes --input-size --mean --std --out",
    "cav": "--checkpoint --dataset --labels --split --layer --pooling --scope --attacked-class --concept --random "
    "--save --out --json --kind",
    "cavs list": "--checkpoint --dataset --all --json",
    "cavs rename": "--checkpoint --dataset",
    "cavs delete": "--checkpoint --dataset",
    "cavs export": "--checkpoint --dataset --out",
    "cavs import": "--checkpoint --dataset --name",
    "correct": "--out --json",
    "evaluate": "--checkpoint --dataset --cav --labels --attacked-class --split --artifact --json --attack",
    "runs submit": "--ray --max-cpu-jobs --wait --name --json",
    "runs sweep": "--ray --max-cpu-jobs --wait --lams --methods --cav-kinds --json",
    "runs list": "--sweep --json",
    "runs show": "--json",
    "runs cancel": "",
    "report": "--out",
    "reveal": "--checkpoint --dataset --class --top --json --max-clusters",
    "bench attribution": "--checkpoint --layer --quick --json",
    "bench cav": "--checkpoint --layer --pooling --quick --json",
    "bench correction": "--checkpoint --epochs --device --quick --dataset --markdown --json",
    "bench data": "--images --size --json",
    "bench default-model": "--tolerance --json",
    "bench discovery": "--artifacts --n-train --p --epochs --quick --root --json",
    "bench gpu": "--device --images --epochs --tolerance --dataset --json",
    "bench multi": "--artifacts --n-train --p --epochs --correction-epochs --lam --no-select --quick --root --json",
    "bench natural": "--n-train --p --epochs --correction-epochs --quick --root --artifacts --ranks --augment --json",
    "bench scale": "--images --arch --size --subset --heatmap-images --root --json",
    "bench soak": "--ops --runs --seconds --seed --writers --quick --keep --json",
}


def test_every_command_keeps_its_flags():
    commands = {c.name for c in registered()} | {c.name for c in bench_commands()}
    assert commands == set(FLAGS)
    for name, flags in FLAGS.items():
        spelled = {s for action in _parser(name)._actions for s in action.option_strings}
        assert {"--workspace", "-v", "--verbose", *flags.split()} <= spelled, name


def test_without_options_a_command_gets_its_configs_defaults():
    """Every command (and benchmark) without required arguments, given none, runs on its config's defaults."""
    parser, checked = build_parser(), 0
    for cmd in [*registered(), *bench_commands()]:
        if cmd.arguments is not None or any(o.required for o in options_of(cmd.options)):
            continue
        assert config_from(parser.parse_args(cmd.name.split()), cmd.options) == cmd.options(), cmd.name
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    "argv, expected",
    [
        ("bench data", {"images": 1000, "size": 64, "json": None}),
        ("bench soak", {"seconds": 600, "seed": 0, "ops": None, "quick": False, "keep": False}),
        ("bench gpu", {"device": "cuda", "images": 1024, "epochs": 10, "tolerance": 0.01, "dataset": "synthderm"}),
        ("bench correction", {"device": "auto", "epochs": None, "checkpoint": None, "markdown": None}),
        ("bench cav", {"pooling": "max", "layer": None}),
        ("bench multi", {"lam": 1e5, "select": True, "n_train": 3000, "p": 0.3, "correction_epochs": 20}),
        ("bench multi --no-select --quick", {"select": False, "quick": True}),
        (
            "bench discovery",
            {"epochs": 12, "artifacts": "skin_marker:melanoma,dark_corner:nevus,ruler:seborrheic_keratosis"},
        ),
        ("bench scale", {"images": 2000, "arch": "resnet18", "size": None, "subset": 256}),
        ("bench default-model", {"tolerance": 0.01}),
        (
            "cav",
            {"split": "train", "pooling": "mean", "scope": "attacked_class", "concept": "artifact", "random": None},
        ),
        ("cav --save marks --random 0 --kind svm", {"save": "marks", "random": 0}),
        ("evaluate", {"split": "test", "cav": None}),
        ("reveal --class melanoma --class nevus", {"classes": ("melanoma", "nevus"), "top": 5}),
        ("runs sweep --lams 1e3,1e4", {"lams": "1e3,1e4", "wait": False, "name": None}),
        ("runs submit --max-cpu-jobs 2 --wait", {"max_cpu_jobs": 2, "wait": True, "name": ""}),
        ("cavs rename old new", {"cav": "old", "name": "new"}),
        ("import-checkpoint m.pt --arch vgg16 --classes a,b --out x", {"path": "m.pt", "mean": "0.485,0.456,0.406"}),
        ("report r1 --workspace ws -v", {"run_id": "r1", "out": None, "workspace": "ws", "verbose": True}),
        ("train --quick --epochs 2", {"quick": True, "out": None}),
    ],
)
def test_flags_keep_their_defaults_and_meaning(argv, expected):
    args = build_parser().parse_args(argv.split())
    cmd = args.run.args[0]  # the Command the parser runs
    opts = config_from(args, cmd.options)
    assert {k: getattr(opts, k, None) for k in expected} == expected


def test_nested_configs_are_built_from_their_options():
    parse_args = build_parser().parse_args
    train = parse_args(["train", "--quick", "--epochs", "2"])
    config = config_from(train, train.run.args[0].options).train
    assert config.epochs == 2 and "n_train=1200" in config.dataset  # the quick config, changed by --epochs
    assert config_from(parse_args(["train"]), train.run.args[0].options).train.dataset == "synthderm"
    cav = parse_args(["cav", "--kind", "svm"])
    assert config_from(cav, cav.run.args[0].options).config.kind == "svm"
    reveal = parse_args(["reveal", "--max-clusters", "4", "--split", "val"])
    config = config_from(reveal, reveal.run.args[0].options).reveal
    assert (config.max_clusters, config.split) == (4, "val")


def test_every_benchmark_declares_its_options_and_result():
    for name, bench in benchmarks().items():
        assert issubclass(bench.options, BenchOptions), name
        assert bench.options().json is None and bench.options().workspace is None, name
        result = bench.measure.__annotations__["return"]
        assert result.endswith("Result"), name


@dataclass(frozen=True)
class _Figures(BenchResult):
    layer: str
    seconds: float
    speed: dict[str, float]
    tolerance: float = printed()
    json_digits: ClassVar[dict[str, int]] = {"seconds": 2, "speed": 1}

    def lines(self) -> list[str]:
        return [f"{self.layer}: {self.seconds:.3f} s within {self.tolerance:g}"]


def test_a_result_writes_its_fields_as_json_rounded_as_declared_and_prints_its_lines():
    result = _Figures("features.20", 1.23456, {"a": 2.345, "b": 10.0}, tolerance=0.01)
    assert result.to_json() == {"layer": "features.20", "seconds": 1.23, "speed": {"a": 2.3, "b": 10.0}}
    assert result.lines() == ["features.20: 1.235 s within 0.01"]  # printed from the figures as measured
    assert dataclasses.asdict(result)["tolerance"] == 0.01
