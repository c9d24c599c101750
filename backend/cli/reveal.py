"""`python -m backend reveal`: candidate shortcuts of a model, found before anyone annotated them (SpRAy clusters
and concept-atlas channels of each class's latent relevances), printed ranked and written as JSON."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from backend.cli.common import add_options, given_options, model_and_dataset, write_json
from backend.discovery import RevealConfig, reveal
from backend.models import model_fingerprint

__all__ = ["add_reveal"]


def add_reveal(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register the `reveal` command."""
    p = sub.add_parser(
        "reveal",
        parents=[common],
        help="find candidate shortcuts: clusters of explanations and the channels a class leans on",
        description="For each class, explain its training images at a layer (LRP relevance per channel), cluster "
        "the explanations (spectral clustering, the number of clusters by the eigengap) and read the class's most "
        "relevant channels; rank the groups of samples by how distinct their reasons are (d'). Groups of half the "
        "class or more are its main reasons and are left out. Review a candidate's samples in the dashboard's "
        "Reveal page, or label them from the JSON (sample_ids).",
    )
    p.add_argument("--checkpoint", help="model (default: the shipped default model)")
    p.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    p.add_argument("--class", dest="class_names", action="append", metavar="CLASS", help="a class (repeatable)")
    add_options(p, RevealConfig, skip=("classes",))
    p.add_argument("--top", type=int, default=5, help="candidates printed per class (default 5; the JSON has all)")
    p.add_argument("--json", help="write the candidates as JSON to this file")
    p.set_defaults(run=_run_reveal)


def _run_reveal(args: argparse.Namespace) -> int:
    model, dataset = model_and_dataset(args)
    config = RevealConfig(**given_options(args, RevealConfig), classes=tuple(args.class_names or ()))
    found = reveal(model, dataset, config, workspace=args.workspace)
    for result in found:
        print(
            f"{result.class_name}: {len(result.sample_ids)} images, {result.clusters.n_clusters} clusters "
            f"(eigengap {result.clusters.eigengap:.3f}), {len(result.candidates)} candidates"
        )
        for c in result.candidates[: args.top]:
            print(f"  {c.rank:2d}. {c.key:22s} {len(c.sample_ids):5d} images ({c.share:.0%})  d' {c.score:.2f}")
    write_json(
        args.json,
        {
            "model": model_fingerprint(model),
            "dataset": dataset.dataset_id,
            "config": asdict(config),
            "classes": {r.class_name: r.to_json() for r in found},
        },
    )
    return 0
