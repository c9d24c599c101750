"""What the commands share: JSON output, the model and dataset a command works on, and a correction job's
command-line arguments (built from the configs' declared options, `backend.cli.arguments`)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from backend.cli.arguments import add_option, add_options, given_options, help_text
from backend.correction import LoopConfig, get_method, method_names
from backend.data import ClarcDataset, open_dataset
from backend.device import resolve_device
from backend.errors import ConfigError
from backend.evaluation import AttackConfig
from backend.models import LoadedModel, load_checkpoint
from backend.options import Option, options_of
from backend.runs import ConceptSpec, CorrectionJob

__all__ = [
    "add_job_arguments",
    "add_options",
    "given_options",
    "job_from_args",
    "parse_concept",
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
    """The options of a correction job, shared by `correct`, `runs submit` and `runs sweep`: the job's, the methods',
    the loop's, the attack's, the first concept's labels, name and class, and a `--cav` per concept."""
    add_options(parser, CorrectionJob)
    add_options(parser, ConceptSpec, skip=("cav",))
    _add_method_options(parser)
    add_options(parser, LoopConfig)
    add_options(parser, AttackConfig)
    spelling = "'CAV[;lam=X][;labels=CSV][;concept=NAME][;attacked_class=C][;attacked_dataset=SPEC][;rank=R]'"
    parser.add_argument(
        "--cav",
        action="append",
        default=[],
        metavar=spelling,
        help="a concept to correct along its saved CAV (name, id or file), with its own λ, annotation file, name, "
        "attacked class, attacked copy of the test images and rank (directions penalised: 1, the CAV; more, a "
        "concept subspace) where given; repeat for several shortcuts in one run. "
        "The first concept's --labels, --concept and --attacked-class may also be given on their own. Default: a "
        "CAV fitted from --labels (or the planted artifact)",
    )
    parser.add_argument(
        "--also-cav",
        action="append",
        default=[],
        metavar=spelling,
        help="a further concept after the --cav ones (or after the one fitted from --labels), spelled as --cav",
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
    concepts = [parse_concept(text) for text in args.cav] or [ConceptSpec()]
    given = given_options(args, ConceptSpec)
    unset = ConceptSpec()  # what its --cav text left at the default, the options given on their own fill
    first = {k: v for k, v in given.items() if k != "cav" and getattr(concepts[0], k) == getattr(unset, k)}
    concepts[0] = replace(concepts[0], **first)
    concepts += [parse_concept(text) for text in args.also_cav]
    return CorrectionJob(out=out, method_options=options, loop=loop, attack=attack, concepts=tuple(concepts), **job)


_CONCEPT_KEYS = ("lam", "labels", "concept", "attacked_class", "attacked_dataset", "rank")
_NUMBERS = {"lam": float, "rank": int}


def parse_concept(text: str) -> ConceptSpec:
    """`CAV;key=value;...` of `--cav` as a ConceptSpec (keys: lam, labels, concept, attacked_class,
    attacked_dataset, rank)."""
    ref, *pairs = [part.strip() for part in text.split(";")]
    if not ref:
        raise ConfigError(f"--cav {text!r}: name the CAV first")
    values: dict = {}
    for pair in filter(None, pairs):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in _CONCEPT_KEYS:
            raise ConfigError(f"--cav {text!r}: {pair!r} is not one of " + ", ".join(f"{k}=" for k in _CONCEPT_KEYS))
        try:
            values[key] = _NUMBERS[key](value) if key in _NUMBERS else value.strip()
        except ValueError:
            kind = "a whole number" if key == "rank" else "a number"
            raise ConfigError(f"--cav {text!r}: {key} must be {kind}, got {value!r}") from None
    return ConceptSpec(cav=ref, **values)
