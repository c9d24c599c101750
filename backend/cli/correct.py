"""`python -m backend correct | evaluate`: correct a model for a concept and export it; evaluate a checkpoint."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from backend.cli.common import add_job_arguments, job_from_args, model_and_dataset, write_json
from backend.concepts import fit_concept, load_cav, planted_labels
from backend.evaluation import evaluate
from backend.runs import run_correction_job

__all__ = ["add_correct", "add_evaluate"]

_FIGURES = ("clean_acc", "attacked_acc", "tcav_sensitivity", "tcav_score", "r_bias")


def add_correct(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "correct",
        parents=[common],
        help="correct a model for a concept (RR-ClArC or a baseline) and export it with a model card",
        description="Fit the concept's CAV, measure the model, correct it, measure again and export the corrected "
        "checkpoint with its model card. Concept labels come from --labels (CSV sample_id,label of the training "
        "split) or, without it, from the planted artifact.",
    )
    add_job_arguments(p, with_out=True)
    p.set_defaults(run=_run_correct)


def _run_correct(args: argparse.Namespace) -> int:
    job = job_from_args(args, args.out)
    bar = tqdm(total=job.loop.epochs, desc=job.method, unit="epoch", file=sys.stderr, disable=None)

    def on_progress(event) -> None:
        bar.update(1)
        figures = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items() if k != "epoch")
        bar.write(f"epoch {event.step}/{event.total} {figures}", file=sys.stderr)

    try:
        summary = run_correction_job(job, workspace=args.workspace, on_progress=on_progress)
    finally:
        bar.close()
    before, after = summary["before"], summary["after"]
    print(f"{'':18s} {'before':>9s} {'after':>9s}")
    for key in _FIGURES:
        if before.get(key) is not None and after.get(key) is not None:
            print(f"{key:18s} {before[key]:9.4f} {after[key]:9.4f}")
    print(f"corrected model: {summary['checkpoint']} (card {summary['card']})")
    write_json(args.json, summary | {"job": job.to_dict()})
    return 0


def add_evaluate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="clean/attacked accuracy, TCAV and R_bias of a checkpoint",
        description="Evaluate a checkpoint on a split: clean and attacked accuracy, per class, and, with a CAV (given, "
        "or fitted from the planted artifact), TCAV score and sensitivity; R_bias with the artifact's masks.",
    )
    p.add_argument("--checkpoint", help="model (default: the shipped default model)")
    p.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    p.add_argument("--cav", help="a saved CAV (.json) for TCAV (default: fitted from the planted artifact)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--artifact", help="artifact for the attacked view (default: the planted one)")
    p.add_argument("--json", help="write the figures as JSON to this file")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    model, dataset = model_and_dataset(args)
    if args.cav:
        cav = load_cav(args.cav)
    elif dataset.planting is not None:
        cav = fit_concept(
            model, dataset, planted_labels(dataset), pooling="mean", n_random=0, workspace=args.workspace
        ).cav
    else:
        cav = None
    figures = evaluate(model, dataset, cav, split=args.split, artifact=args.artifact).to_dict()
    for key in _FIGURES:
        if figures.get(key) is not None:
            print(f"{key:18s} {figures[key]:.4f}")
    write_json(args.json, figures)
    return 0
