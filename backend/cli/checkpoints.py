"""`python -m backend import-checkpoint`: a model trained elsewhere (torchvision, DataParallel, Lightning) as an
ordinary checkpoint with a card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.cli.registry import command
from backend.data import Normalization
from backend.errors import ConfigError
from backend.models import IMAGENET_NORMALIZATION, architecture_names, import_checkpoint
from backend.options import CommonOptions, option

__all__ = ["ImportOptions"]

_MEAN, _STD = (
    ",".join(f"{v:g}" for v in values) for values in (IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std)
)


@dataclass(frozen=True, kw_only=True)
class ImportOptions(CommonOptions):
    """turn a model trained elsewhere into a checkpoint with a card

    Read a torchvision state dict, a DataParallel checkpoint (module. prefixes), a PyTorch Lightning .ckpt (its
    state_dict, model. prefixes) or a safetensors file without a card, without unpickling code; load it into a
    registered architecture and write it as a .safetensors checkpoint with its model card."""

    path: str = option(help="the checkpoint file (.pt, .pth, .bin, .ckpt or .safetensors)", positional=True)
    arch: str = option(help="the registered architecture the weights are for", choices=architecture_names)
    classes: str = option(help="class names in the order of the model's outputs, comma-separated")
    input_size: int | None = option(None, help="image size the model takes (default: the architecture's)")
    mean: str = option(_MEAN, help=f"per-channel input mean on [0, 1] images (default ImageNet's, {_MEAN})")
    std: str = option(_STD, help=f"per-channel input std (default ImageNet's, {_STD})")
    out: str = option(help="the checkpoint to write (.safetensors)")


def _three(text: str, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name} must be three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise ConfigError(f"--{name} must be three comma-separated numbers, got {text!r}")
    return values


@command("import-checkpoint", ImportOptions)
def _run_import(opts: ImportOptions) -> int:
    classes = tuple(c.strip() for c in opts.classes.split(",") if c.strip())
    model = import_checkpoint(
        opts.path,
        arch=opts.arch,
        classes=classes,
        out=opts.out,
        input_size=opts.input_size,
        normalization=Normalization(_three(opts.mean, "mean"), _three(opts.std, "std")),
    )
    imported = model.meta.training["imported"]
    where = f" (prefix '{imported['prefix']}' removed)" if imported["prefix"] else ""
    print(f"imported {Path(opts.path).name}{where} as {model.meta.arch} with {len(classes)} classes: {model.path}")
    if imported["set_aside"]:
        print(f"  set aside, not part of the model: {', '.join(imported['set_aside'])}")
    return 0
