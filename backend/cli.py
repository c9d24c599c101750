"""Command line of ClArC Studio: `python -m backend train | info | bench ...`, each with --help."""

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
    for add in (_add_train, _add_info, _add_bench):
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
