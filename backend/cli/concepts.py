"""`python -m backend cav`: fit a CAV for a concept and report its quality."""

from __future__ import annotations

import argparse

from backend.cli.common import add_options, given_options, model_and_dataset, write_json
from backend.concepts import CavConfig, fit_concept, planted_labels, read_concept_labels

__all__ = ["add_cav"]


def add_cav(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "cav",
        parents=[common],
        help="fit a CAV for a concept and report its quality",
        description="Fit a Concept Activation Vector from concept labels (a CSV sample_id,label) or, without "
        "labels, from the artifact planted in the dataset; save it and print AUC, alignment and significance.",
    )
    p.add_argument("--checkpoint", help="model (default: the shipped default model)")
    p.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    p.add_argument("--labels", help="CSV with columns sample_id,label (default: the planted artifact)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="split the labels refer to")
    p.add_argument("--layer", help="layer name (default: the architecture's default CAV layer)")
    p.add_argument("--pooling", default="max", choices=["max", "mean"])
    add_options(p, CavConfig)
    p.add_argument("--concept", default="artifact", help="name of the concept, e.g. 'skin marker'")
    p.add_argument("--random", type=int, default=20, help="random CAVs for the significance test (0: skip)")
    p.add_argument("--out", help="where to save the CAV (<out>.json + <out>.npy)")
    p.add_argument("--json", help="write the quality figures as JSON to this file")
    p.set_defaults(run=_run_cav)


def _run_cav(args: argparse.Namespace) -> int:
    model, dataset = model_and_dataset(args)
    labels = read_concept_labels(args.labels) if args.labels else planted_labels(dataset, args.split)
    fit = fit_concept(
        model,
        dataset,
        labels,
        split=args.split,
        layer=args.layer,
        pooling=args.pooling,
        config=CavConfig(**given_options(args, CavConfig)),
        concept=args.concept,
        n_random=args.random,
        workspace=args.workspace,
    )
    summary = fit.summary()
    print(
        f"{summary['kind']} CAV for '{args.concept}' in {summary['layer']} ({summary['pooling']}-pooled): "
        f"{summary['n_concept']} concept vs {summary['n_other']} other samples, fitted in "
        f"{summary['fit_seconds']:.3f} s"
    )
    for key in ("train_auc", "held_out_auc", "alignment"):
        if summary[key] is not None:
            print(f"  {key:13s} {summary[key]:.3f}")
    if fit.significance is not None:
        verdict = "distinguishable from random" if fit.significance.significant else "NOT distinguishable from random"
        print(f"  significance  p = {fit.significance.p_value:.3f} ({verdict})")
    if args.out:
        summary["path"] = str(fit.cav.save(args.out))
        print(f"saved {summary['path']}")
    write_json(args.json, summary)
    return 0
