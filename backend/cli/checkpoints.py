"""`python -m backend import-checkpoint`: a model trained elsewhere (torchvision, DataParallel, Lightning) as an
ordinary checkpoint with a card."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.data import Normalization
from backend.errors import ConfigError
from backend.models import IMAGENET_NORMALIZATION, architecture_names, import_checkpoint

__all__ = ["add_import_checkpoint"]


def add_import_checkpoint(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "import-checkpoint",
        parents=[common],
        help="turn a model trained elsewhere into a checkpoint with a card",
        description="Read a torchvision state dict, a DataParallel checkpoint (module. prefixes), a PyTorch Lightning "
        ".ckpt (its state_dict, model. prefixes) or a safetensors file without a card, without unpickling code; load "
        "it into a registered architecture and write it as a .safetensors checkpoint with its model card.",
    )
    p.add_argument("path", help="the checkpoint file (.pt, .pth, .bin, .ckpt or .safetensors)")
    p.add_argument("--arch", required=True, choices=list(architecture_names()))
    p.add_argument("--classes", required=True, help="class names in the order of the model's outputs, comma-separated")
    p.add_argument("--input-size", type=int, help="image size the model takes (default: the architecture's)")
    mean, std = (
        ",".join(f"{v:g}" for v in values) for values in (IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std)
    )
    p.add_argument("--mean", default=mean, help=f"per-channel input mean on [0, 1] images (default ImageNet's, {mean})")
    p.add_argument("--std", default=std, help=f"per-channel input std (default ImageNet's, {std})")
    p.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    p.set_defaults(run=_run_import)


def _three(text: str, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name} must be three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise ConfigError(f"--{name} must be three comma-separated numbers, got {text!r}")
    return values


def _run_import(args: argparse.Namespace) -> int:
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    model = import_checkpoint(
        args.path,
        arch=args.arch,
        classes=classes,
        out=args.out,
        input_size=args.input_size,
        normalization=Normalization(_three(args.mean, "mean"), _three(args.std, "std")),
    )
    imported = model.meta.training["imported"]
    where = f" (prefix '{imported['prefix']}' removed)" if imported["prefix"] else ""
    print(f"imported {Path(args.path).name}{where} as {model.meta.arch} with {len(classes)} classes: {model.path}")
    if imported["set_aside"]:
        print(f"  set aside, not part of the model: {', '.join(imported['set_aside'])}")
    return 0
