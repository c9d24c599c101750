"""`python -m backend train`: train a classifier on a dataset spec and write a checkpoint."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from backend.cli.common import write_json
from backend.cli.registry import command
from backend.data import parse_spec
from backend.models import save_checkpoint
from backend.options import CommonOptions, JsonOutput, nested, option, switch
from backend.storage import resolve_workspace
from backend.training import TrainConfig, train_model

__all__ = ["TrainOptions"]


@dataclass(frozen=True, kw_only=True)
class TrainOptions(CommonOptions, JsonOutput):
    """train a classifier on a dataset spec and write a checkpoint

    Train a classifier. With no options this regenerates the biased default model (compact VGG on the embedded SynthDerm
    benchmark with skin markers in melanoma training images)."""

    # the training options given change the default config, or with --quick the tiny one
    train: TrainConfig = nested(
        TrainConfig, base=lambda given: TrainConfig.quick() if given.get("quick") else TrainConfig()
    )
    quick: bool = switch(help="tiny config (small splits, few epochs) for a smoke test")
    out: str | None = option(
        None, help="checkpoint (.safetensors); default <workspace>/models/<arch>-<dataset id>.safetensors"
    )


@command("train", TrainOptions)
def _run_train(opts: TrainOptions) -> int:
    config = opts.train
    spec = parse_spec(config.dataset)
    workspace = resolve_workspace(opts.workspace)
    out = Path(opts.out) if opts.out else workspace / "models" / f"{config.arch}-{spec.dataset_id}.safetensors"
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
        opts.json,
        {"checkpoint": str(out), "config": result.model.meta.training, "metrics": metrics, "history": result.history},
    )
    return 0
