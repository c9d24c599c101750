"""What the commands share: JSON output, the model and dataset a command works on, and a correction job's
command-line arguments (built from the configs' declared options, `backend.cli.arguments`)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from backend.cli.arguments import add_option, add_options, given_options, help_text
from backend.correction import LoopConfig, get_method, method_names
from backend.data import ClarcDataset, open_dataset
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


def model_and_dataset(opts) -> tuple[LoadedModel, ClarcDataset]:
    """The --checkpoint (default: the shipped model, on the GPU when there is one) and the --dataset (default: the
    one the model was trained on) of a command's options (`ModelOption`, `DatasetOption`), in its --workspace."""
    model = load_checkpoint(opts.checkpoint_path, device=resolve_device("auto"))
    return model, open_dataset(opts.dataset or model.meta.dataset, opts.workspace)


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """Every method's options, one argument per name; the help says which method takes it and its default there."""
    by_name: dict[str, list[tuple[str, Option]]] = defaultdict(list)
    for method in method_names():
        for opt in options_of(get_method(method).config):
            by_name[opt.name].append((method, opt))
    for takers in by_name.values():
        opt = takers[0][1]
        text = "; ".join(f"{m}: {help_text(o)}" for m, o in takers)
        add_option(parser, opt, text)


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
