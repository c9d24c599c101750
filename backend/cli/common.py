"""What the commands share: JSON output, the model and dataset a command works on, and command-line arguments
built from the config dataclasses' declared options (`backend.options`), so a default or help text lives once."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from backend.correction import LoopConfig, get_method, method_names
from backend.data import ClarcDataset, open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.evaluation import AttackConfig
from backend.models import LoadedModel, load_checkpoint
from backend.options import Option, options_of
from backend.runs import CorrectionJob, ExtraConcept

__all__ = [
    "add_job_arguments",
    "add_options",
    "given_options",
    "job_from_args",
    "model_and_dataset",
    "write_json",
]


def write_json(path: str | None, payload: dict) -> None:
    """Write `payload` as JSON to `path` (if given) and say so."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


def model_and_dataset(args: argparse.Namespace) -> tuple[LoadedModel, ClarcDataset]:
    """The --checkpoint (default: the shipped model, on the GPU when there is one) and the --dataset (default: the
    one the model was trained on)."""
    model = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, device=resolve_device("auto"))
    return model, open_dataset(args.dataset or model.meta.dataset, args.workspace)


def _add_option(parser: argparse.ArgumentParser, opt: Option, help_text: str) -> None:
    """One argument for a declared option; its default is None, so only what the user gave is passed on."""
    flags = [opt.flag, *opt.flags]
    if opt.kind is bool:
        parser.add_argument(*flags, dest=opt.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    else:
        parser.add_argument(*flags, dest=opt.name, type=opt.kind, choices=opt.choices, default=None, help=help_text)


def _with_default(opt: Option) -> str:
    """The option's help, ending with its default unless the help already says what it is."""
    if "default" in opt.help or opt.default is None:
        return opt.help
    default = f"{opt.default:g}" if opt.kind is float and opt.default is not None else opt.default
    return f"{opt.help} (default {default})"


def add_options(parser: argparse.ArgumentParser, config: type, *, skip: tuple[str, ...] = ()) -> None:
    """An argument per declared option of `config`, its help ending with the default."""
    for opt in options_of(config):
        if opt.name not in skip:
            _add_option(parser, opt, _with_default(opt))


def given_options(args: argparse.Namespace, config: type) -> dict:
    """The declared options of `config` that the command line gave, by field name."""
    return {o.name: getattr(args, o.name) for o in options_of(config) if getattr(args, o.name, None) is not None}


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """Every method's options, one argument per name; the help says which method takes it and its default there."""
    by_name: dict[str, list[tuple[str, Option]]] = defaultdict(list)
    for method in method_names():
        for opt in options_of(get_method(method).config):
            by_name[opt.name].append((method, opt))
    for takers in by_name.values():
        opt = takers[0][1]
        text = "; ".join(f"{m}: {_with_default(o)}" for m, o in takers)
        _add_option(parser, opt, text)


def add_job_arguments(parser: argparse.ArgumentParser, *, with_out: bool) -> None:
    """The options of a correction job, shared by `correct`, `runs submit` and `runs sweep`."""
    add_options(parser, CorrectionJob)
    _add_method_options(parser)
    add_options(parser, LoopConfig)
    add_options(parser, AttackConfig)
    parser.add_argument(
        "--also-cav",
        action="append",
        default=[],
        metavar="'CAV[;lam=X][;labels=CSV][;attacked_class=C][;attacked_dataset=SPEC]'",
        help="a further saved CAV (name, id or file) corrected in the same run, with its own λ, annotation file, "
        "attacked class and attacked copy of the test images where given; repeat for each concept",
    )
    if with_out:
        parser.add_argument("--out", required=True, help="output folder (or .safetensors path) of the corrected model")
    parser.add_argument("--json", help="write the results as JSON to this file")


def job_from_args(args: argparse.Namespace, out: str) -> CorrectionJob:
    """The correction job the command line describes; options a method does not take are an error."""
    job = given_options(args, CorrectionJob)
    names = {o.name for m in method_names() for o in options_of(get_method(m).config)}
    options = {name: getattr(args, name) for name in sorted(names) if getattr(args, name, None) is not None}
    loop, attack = LoopConfig(**given_options(args, LoopConfig)), AttackConfig(**given_options(args, AttackConfig))
    more = tuple(parse_extra_concept(text) for text in getattr(args, "also_cav", []))
    return CorrectionJob(out=out, method_options=options, loop=loop, attack=attack, more_concepts=more, **job)


def parse_extra_concept(text: str) -> ExtraConcept:
    """`CAV;key=value;...` of `--also-cav` as an ExtraConcept (keys: lam, labels, attacked_class, attacked_dataset)."""
    ref, *pairs = [part.strip() for part in text.split(";")]
    if not ref:
        raise ConfigError(f"--also-cav {text!r}: name the CAV first")
    values: dict = {}
    for pair in filter(None, pairs):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in ("lam", "labels", "attacked_class", "attacked_dataset"):
            raise ConfigError(
                f"--also-cav {text!r}: {pair!r} is not one of lam=, labels=, attacked_class=, attacked_dataset="
            )
        try:
            values[key] = float(value) if key == "lam" else value.strip()
        except ValueError:
            raise ConfigError(f"--also-cav {text!r}: lam must be a number, got {value!r}") from None
    return ExtraConcept(cav=ref, **values)
