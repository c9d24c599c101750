"""`python -m backend correct | evaluate`: correct a model for a concept and export it; evaluate a checkpoint."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from typing import Literal

from tqdm import tqdm

from backend.cli.arguments import from_args
from backend.cli.common import add_job_arguments, job_from_args, model_and_dataset, write_json
from backend.cli.registry import command
from backend.concepts import fit_concept, planted_labels, read_concept_labels, resolve_cav
from backend.evaluation import FIGURES, AttackConfig, estimate_notice, evaluate
from backend.options import CommonOptions, DatasetOption, JsonOutput, ModelOption, nested, option
from backend.runs import (
    ConceptOutcome,
    CorrectionJob,
    RunResult,
    concept_rows,
    lesion_overlap_advice,
    run_correction_job,
)

__all__ = ["CorrectOptions", "EvaluateOptions", "concepts_table"]


@dataclass(frozen=True, kw_only=True)
class CorrectOptions(CommonOptions):
    """correct a model for a concept (RR-ClArC or a baseline) and export it with a model card

    Fit the concept's CAV, measure the model, correct it, measure again and export the corrected checkpoint with its
    model card. Concept labels come from --labels (CSV sample_id,label of the training split) or, without it, from the
    planted artifact."""

    # the job's options are declared by `add_job_arguments` (--out and --json among them)
    job: CorrectionJob | None = from_args(lambda args: job_from_args(args, args.out))
    json: str | None = from_args(lambda args: args.json)


@command("correct", CorrectOptions, arguments=partial(add_job_arguments, with_out=True))
def _run_correct(opts: CorrectOptions) -> int:
    job = opts.job
    bar = tqdm(total=job.loop.epochs, desc=job.method, unit="epoch", file=sys.stderr, disable=None)

    def on_progress(event) -> None:
        if event.stage != "epoch":
            bar.write(event.message, file=sys.stderr)
            return
        bar.update(1)
        figures = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items() if k != "epoch")
        bar.write(f"{event.message} {figures}", file=sys.stderr)

    try:
        result = run_correction_job(job, workspace=opts.workspace, on_progress=on_progress)
    finally:
        bar.close()
    before, after, cav = result.before, result.after, result.cav
    print(
        f"CAV: {cav.name or cav.source} ({cav.kind}, {cav.layer}, {cav.pooling}-pooled, "
        f"scope {cav.scope}, attacked class {cav.attacked_class})"
    )
    detail = cav.coverage_detail
    if detail:
        print(
            f"coverage of the artifact's activation change: {detail['coverage']:.0%} pooled, "
            f"{detail['position_coverage']:.0%} at every position ({detail['n_pairs']} {detail['source']} pairs)"
            + (
                "  WARNING: most of the shortcut lies outside the CAV"
                if min(detail["coverage"], detail["position_coverage"]) < 0.5
                else ""
            )
        )
    if after.attack_source:
        print(f"attacked images: {after.attack_source} ({after.n_attacked} images)")
    print(f"{'':18s} {'before':>9s} {'after':>9s}")
    for key in FIGURES:
        if getattr(before, key) is not None and getattr(after, key) is not None:
            print(f"{key:18s} {getattr(before, key):9.4f} {getattr(after, key):9.4f}")
    print(attacked_summary(result.concepts[0]))
    advice = lesion_overlap_advice(result.concepts[0], job.loop.augment)
    if advice:
        print(f"NOTE: {advice}")
    if len(result.concepts) > 1:
        print(concepts_table(result))
    print(f"corrected model: {result.outputs.checkpoint} (card {result.outputs.card})")
    write_json(opts.json, result.to_dict() | {"job": job.to_dict()})
    return 0


def attacked_summary(outcome: ConceptOutcome) -> str:
    """The attacked accuracy with its 95% intervals, the gap closed with its interval and, for an estimate, its
    check (a warning with what to do where it failed), in lines."""
    figure, before, after = FIGURES["attacked_acc"], outcome.before, outcome.after
    if before.attacked_acc is None or after.attacked_acc is None:
        return "no attacked figures: annotate training images that show the artifact, or supply an attacked copy"
    lines = [
        f"attacked accuracy {figure.text(before.attacked_acc)} (95% interval "
        f"{figure.interval_text(before.attacked_acc_interval) or '-'}) -> {figure.text(after.attacked_acc)} "
        f"({figure.interval_text(after.attacked_acc_interval) or '-'})"
    ]
    if outcome.gap_closed() is not None:
        lines.append(f"gap closed {outcome.gap_closed_text()} ({outcome.estimate_label})")
    notice = estimate_notice(after)
    if notice:
        lines.append(("WARNING: " if outcome.reliable is not True else "") + notice)
    return "\n".join(lines)


def concepts_table(result: RunResult) -> str:
    """Each concept's attacked accuracy, TCAV sensitivity and R_bias before -> after, one line per concept."""

    def pair(row: dict, key: str) -> str:
        before, after = row[f"{key} before"], row[f"{key} after"]
        return "-" if before is None or after is None else f"{before:.3f} -> {after:.3f}"

    header = ("concept", "class", "attacked acc", "TCAV sensitivity", "R_bias", "gap closed")
    lines = [f"{header[0]:18s} {header[1]:14s} " + " ".join(f"{h:>16s}" for h in header[2:])]
    for row in concept_rows(result):
        closed = "-" if row["gap closed"] is None else f"{row['gap closed']:.0%}"
        lines.append(
            f"{row['concept'] or '?':18s} {row['attacked class'] or '-':14s} {pair(row, 'attacked_acc'):>16s} "
            f"{pair(row, 'tcav_sensitivity'):>16s} {pair(row, 'r_bias'):>16s} {closed:>16s}"
        )
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions(CommonOptions, ModelOption, DatasetOption, JsonOutput):
    """clean/attacked accuracy, TCAV and R_bias of a checkpoint

    Evaluate a checkpoint on a split: clean accuracy per class and confusion matrix; attacked accuracy on planted,
    supplied (--attacked-dataset) or transplanted images (cut from the training samples --labels marks); TCAV and R_bias
    with a CAV (--cav, or fitted from the labels); with labels of the split, accuracy with and without the annotated
    artifact."""

    cav: str | None = option(None, help="the CAV for TCAV: a saved CAV's name or id, or a CAV file (default: fitted)")
    labels: str | None = option(None, help="concept labels, CSV sample_id,label (default: the planted artifact)")
    attacked_class: str | None = option(None, help="the class the artifact is tied to (default: the CAV's)")
    split: Literal["train", "val", "test"] = option("test", help="the split evaluated")
    artifact: str | None = option(
        None, help="a registered artifact to plant for the attacked view (default: the planted one)"
    )
    attack: AttackConfig = nested(AttackConfig)


@command("evaluate", EvaluateOptions)
def _run_evaluate(opts: EvaluateOptions) -> int:
    model, dataset = model_and_dataset(opts)
    labels = read_concept_labels(opts.labels) if opts.labels else (planted_labels(dataset) if dataset.planting else {})
    if opts.cav:
        cav = resolve_cav(opts.cav, model, dataset.dataset_id, opts.workspace)
    elif labels:
        cav = fit_concept(
            model, dataset, labels, attacked_class=opts.attacked_class, n_random=0, workspace=opts.workspace
        ).cav
    else:
        cav = None
    marked = {sid for sid, flag in labels.items() if flag}
    in_split = marked & set(dataset.split(opts.split).sample_ids)
    result = evaluate(
        model,
        dataset,
        cav,
        split=opts.split,
        artifact=opts.artifact,
        attacked_class=opts.attacked_class,
        artifact_ids=in_split or None,
        attack=opts.attack,
        donor_ids=marked & set(dataset.split("train").sample_ids),
    )
    if result.attack_source:
        print(f"attacked images: {result.attack_source} ({result.n_attacked} images)")
    for key in FIGURES:
        if getattr(result, key) is not None:
            print(f"{key:20s} {getattr(result, key):.4f}")
    if result.attacked_acc_interval:
        print(f"attacked accuracy, 95% interval: {FIGURES['attacked_acc'].interval_text(result.attacked_acc_interval)}")
    notice = estimate_notice(result)
    if notice:
        print(("WARNING: " if result.reliable is not True else "") + notice)
    write_json(opts.json, result.to_dict())
    return 0
