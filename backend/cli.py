"""Command line of ClArC Studio: `python -m backend train | info | cav | correct | evaluate | bench ...`, each with
--help."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from backend.errors import ClarcError

__all__ = ["main", "build_parser"]

log = logging.getLogger("backend")


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


def _model_and_dataset(args: argparse.Namespace):
    """The --checkpoint (default: the shipped model, on the GPU when there is one) and the --dataset (default: the
    one the model was trained on)."""
    from backend.data import open_dataset
    from backend.defaults import DEFAULT_CHECKPOINT
    from backend.device import resolve_device
    from backend.models import load_checkpoint

    model = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, device=resolve_device("auto"))
    return model, open_dataset(args.dataset or model.meta.dataset, args.workspace)


def _add_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from backend.training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a classifier on a dataset spec and write a checkpoint",
        description="Train a classifier. With no options this regenerates the biased default model "
        "(compact VGG on the embedded SynthDerm benchmark with skin markers in melanoma training images).",
    )
    p.add_argument("--dataset", help=f"dataset spec (default {d.dataset!r})")
    p.add_argument("--arch", help=f"architecture (default {d.arch})")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None, help="no flips / transposes")
    p.add_argument("--num-workers", type=int, help=f"DataLoader worker processes (default {d.num_workers})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"default {d.device}")
    p.add_argument("--quick", action="store_true", help="tiny config (small splits, few epochs) for a smoke test")
    p.add_argument(
        "--out", help="checkpoint (.safetensors); default <workspace>/models/<arch>-<dataset id>.safetensors"
    )
    p.add_argument("--json", help="write the metrics as JSON to this file")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from tqdm import tqdm

    from backend.data import parse_spec
    from backend.models import save_checkpoint
    from backend.training import TrainConfig, train_model
    from backend.workspace import resolve_workspace

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    config = TrainConfig.quick(**given) if args.quick else TrainConfig(**given)
    spec = parse_spec(config.dataset)
    workspace = resolve_workspace(args.workspace)
    out = Path(args.out) if args.out else workspace / "models" / f"{config.arch}-{spec.dataset_id}.safetensors"
    bar = tqdm(total=config.epochs, desc="train", unit="epoch", file=sys.stderr, disable=None)

    def on_progress(event) -> None:
        bar.update(1)
        figures = " ".join(f"{k}={v:.4f}" for k, v in event.metrics.items() if k != "epoch")
        bar.write(f"epoch {event.step}/{event.total} {figures}", file=sys.stderr)

    try:
        result = train_model(config, workspace=workspace, on_progress=on_progress)
    finally:
        bar.close()
    save_checkpoint(result.model.module, result.model.meta, out)
    metrics = result.model.meta.metrics
    print(f"clean test accuracy    {metrics['test_clean_acc']:.4f}")
    if "test_attacked_acc" in metrics:
        print(f"attacked test accuracy {metrics['test_attacked_acc']:.4f} ({metrics['test_artifact']} in every image)")
    print(f"trained in {result.seconds:.1f} s on {metrics['device']}; checkpoint {out}")
    _write_json(
        args.json,
        {"checkpoint": str(out), "config": result.model.meta.training, "metrics": metrics, "history": result.history},
    )
    return 0


def _add_info(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "info",
        parents=[common],
        help="describe a dataset spec and/or a checkpoint (default: both of the default model)",
    )
    p.add_argument("--dataset", help="dataset spec to describe")
    p.add_argument("--checkpoint", help="checkpoint to describe")
    p.add_argument("--json", help="write the description as JSON to this file")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from backend.data import open_dataset
    from backend.defaults import DEFAULT_CHECKPOINT
    from backend.models import load_checkpoint

    checkpoint = args.checkpoint or (None if args.dataset else str(DEFAULT_CHECKPOINT))
    payload: dict = {}
    if checkpoint:
        model = load_checkpoint(checkpoint)
        payload["model"] = model.meta.to_dict() | {"sha256": model.sha256, "default_layer": model.default_layer}
    spec = args.dataset or (payload.get("model", {}).get("dataset"))
    if spec:
        payload["dataset"] = open_dataset(spec, args.workspace).describe()
    print(json.dumps(payload, indent=2))
    _write_json(args.json, payload)
    return 0


def _add_cav(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from backend.cav import cav_kinds

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
    p.add_argument("--kind", default="pattern", choices=list(cav_kinds()))
    p.add_argument("--concept", default="artifact", help="name of the concept, e.g. 'skin marker'")
    p.add_argument("--random", type=int, default=20, help="random CAVs for the significance test (0: skip)")
    p.add_argument("--out", help="where to save the CAV (<out>.json + <out>.npy)")
    p.add_argument("--json", help="write the quality figures as JSON to this file")
    p.set_defaults(run=_run_cav)


def _run_cav(args: argparse.Namespace) -> int:
    from backend.cav import CavConfig
    from backend.concepts import fit_concept, planted_labels, read_concept_labels

    model, dataset = _model_and_dataset(args)
    labels = read_concept_labels(args.labels) if args.labels else planted_labels(dataset, args.split)
    fit = fit_concept(
        model,
        dataset,
        labels,
        split=args.split,
        layer=args.layer,
        pooling=args.pooling,
        config=CavConfig(kind=args.kind),
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
    _write_json(args.json, summary)
    return 0


def _add_job_arguments(p: argparse.ArgumentParser, *, with_out: bool) -> None:
    """The options of a correction job, shared by `correct`, `runs submit` and `runs sweep`."""
    from backend.cav import cav_kinds
    from backend.correction import LoopConfig, method_names

    d = LoopConfig()
    p.add_argument("--checkpoint", help="model (default: the shipped default model)")
    p.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    p.add_argument("--labels", help="concept labels, CSV sample_id,label (default: the planted artifact)")
    p.add_argument("--layer", help="CAV layer (default: the architecture's default)")
    p.add_argument("--cav-kind", default="pattern", choices=list(cav_kinds()))
    p.add_argument("--pooling", default="mean", choices=["mean", "max"], help="CAV pooling (default mean)")
    p.add_argument("--method", default="rrclarc", choices=list(method_names()))
    p.add_argument("--lam", type=float, help="penalty weight (rrclarc default 1e5, rrr default 10)")
    p.add_argument(
        "--gradient-target",
        choices=["max_logit", "target_logit", "all_logits", "all_logits_random", "logprobs"],
        help="rrclarc: what to decorrelate (default logprobs)",
    )
    p.add_argument("--aggregation", choices=["l1", "l2", "cosine"], help="rrclarc: penalty aggregation (default l2)")
    p.add_argument("--class-specific", action="store_true", default=None, help="rrclarc: only the attacked class")
    p.add_argument("--strength", type=float, help="aclarc: how far clean samples move towards the artifact (1)")
    p.add_argument("--mask-source", choices=["ground_truth", "concept"], help="rrr: artifact masks (ground_truth)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", default=d.optimizer, choices=["adam", "sgd"])
    p.add_argument("--trainable", default=d.trainable, choices=["head", "above_layer", "all"])
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-cache", action="store_true", help="always run the full forward pass")
    p.add_argument("--no-mixed-precision", action="store_true", help="full precision on CUDA")
    if with_out:
        p.add_argument("--out", required=True, help="output folder (or .safetensors path) of the corrected model")
    p.add_argument("--json", help="write the results as JSON to this file")


def _job_from_args(args: argparse.Namespace, out: str):
    from backend.correction import LoopConfig
    from backend.correction.pipeline import CorrectionJob
    from backend.defaults import DEFAULT_CHECKPOINT

    names = ("lam", "gradient_target", "aggregation", "class_specific", "strength", "mask_source")
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    loop = LoopConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        trainable=args.trainable,
        seed=args.seed,
        device=args.device,
        cache_activations=not args.no_cache,
        mixed_precision=not args.no_mixed_precision,
    )
    return CorrectionJob(
        out=out,
        checkpoint=args.checkpoint or str(DEFAULT_CHECKPOINT),
        dataset=args.dataset,
        method=args.method,
        method_options=options,
        loop=loop,
        layer=args.layer,
        cav_kind=args.cav_kind,
        pooling=args.pooling,
        labels=args.labels,
    )


def _add_correct(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "correct",
        parents=[common],
        help="correct a model for a concept (RR-ClArC or a baseline) and export it with a model card",
        description="Fit the concept's CAV, measure the model, correct it, measure again and export the corrected "
        "checkpoint with its model card. Concept labels come from --labels (CSV sample_id,label of the training "
        "split) or, without it, from the planted artifact.",
    )
    _add_job_arguments(p, with_out=True)
    p.set_defaults(run=_run_correct)


def _run_correct(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.correction.pipeline import run_correction_job

    job = _job_from_args(args, args.out)
    bar = tqdm(total=job.loop.epochs, desc=args.method, unit="epoch", file=sys.stderr, disable=None)

    def on_progress(event) -> None:
        bar.update(1)
        figures = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items() if k != "epoch")
        bar.write(f"epoch {event.step}/{event.total} {figures}", file=sys.stderr)

    try:
        summary = run_correction_job(job, workspace=args.workspace, on_progress=on_progress)
    finally:
        bar.close()
    _print_before_after(summary["before"], summary["after"])
    print(f"corrected model: {summary['checkpoint']} (card {summary['card']})")
    _write_json(args.json, summary | {"job": job.to_dict()})
    return 0


def _print_before_after(before: dict, after: dict) -> None:
    print(f"{'':18s} {'before':>9s} {'after':>9s}")
    for key in ("clean_acc", "attacked_acc", "tcav_sensitivity", "tcav_score", "r_bias"):
        if before.get(key) is not None and after.get(key) is not None:
            print(f"{key:18s} {before[key]:9.4f} {after[key]:9.4f}")


def _add_evaluate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    from backend.cav import load_cav
    from backend.concepts import fit_concept, planted_labels
    from backend.evaluation import evaluate

    model, dataset = _model_and_dataset(args)
    if args.cav:
        cav = load_cav(args.cav)
    elif dataset.planting is not None:
        cav = fit_concept(
            model, dataset, planted_labels(dataset), pooling="mean", n_random=0, workspace=args.workspace
        ).cav
    else:
        cav = None
    figures = evaluate(model, dataset, cav, split=args.split, artifact=args.artifact).to_dict()
    for key in ("clean_acc", "attacked_acc", "tcav_sensitivity", "tcav_score", "r_bias"):
        if figures.get(key) is not None:
            print(f"{key:18s} {figures[key]:.4f}")
    _write_json(args.json, figures)
    return 0


def _add_bench(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from backend.bench import benchmarks

    p = sub.add_parser("bench", help="run a benchmark; prints its figures and writes JSON")
    names = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, (add_arguments, run, help_text) in benchmarks().items():
        q = names.add_parser(name, parents=[common], help=help_text, description=help_text)
        add_arguments(q)
        q.add_argument("--json", help="write the figures as JSON to this file")
        q.set_defaults(run=lambda args, run=run: _write_json(args.json, run(args)) or 0)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", help="workspace folder (default $CLARC_WORKSPACE or ./workspace)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser = argparse.ArgumentParser(prog="python -m backend", description="ClArC Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from backend.runs.cli import add_runs

    for add in (_add_train, _add_info, _add_cav, _add_correct, _add_evaluate, add_runs, _add_bench):
        add(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except ClarcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
