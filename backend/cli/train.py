"""`python -m backend train`: train a classifier on a dataset spec and write a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from backend.cli.common import add_options, given_options, write_json
from backend.data import parse_spec
from backend.models import save_checkpoint
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

__all__ = ["add_train"]


def add_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a classifier on a dataset spec and write a checkpoint",
        description="Train a classifier. With no options this regenerates the biased default model "
        "(compact VGG on the embedded SynthDerm benchmark with skin markers in melanoma training images).",
    )
    add_options(p, TrainConfig)
    p.add_argument("--quick", action="store_true", help="tiny config (small splits, few epochs) for a smoke test")
    p.add_argument(
        "--out", help="checkpoint (.safetensors); default <workspace>/models/<arch>-<dataset id>.safetensors"
    )
    p.add_argument("--json", help="write the metrics as JSON to this file")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    given = given_options(args, TrainConfig)
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
    write_json(
        args.json,
        {"checkpoint": str(out), "config": result.model.meta.training, "metrics": metrics, "history": result.history},
    )
    return 0
