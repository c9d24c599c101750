"""Bringing a model trained elsewhere: a torchvision state dict, a DataParallel checkpoint (`module.` prefixes), a
PyTorch Lightning `.ckpt` as the seed's code writes them (its `state_dict`, `model.` prefixes) or a safetensors file
without a card, read without unpickling code, matched to a registered architecture and written as an ordinary
checkpoint with a card."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from backend.data.views import Normalization
from backend.errors import CheckpointError
from backend.models.checkpoint import LoadedModel, ModelMeta, check_state, file_sha256, read_weights, save_checkpoint
from backend.models.registry import build_model, get_architecture

__all__ = ["IMAGENET_NORMALIZATION", "import_checkpoint", "strip_prefix"]

# What torchvision's (and most) ImageNet-style training pipelines normalise with.
IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_PREFIXES = ("", "module.", "model.", "model.module.", "module.model.", "net.", "network.")


def strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """The state dict with the wrapper prefix removed that makes most keys the architecture's (`module.` of
    DataParallel, `model.` of a Lightning module); keys outside the wrapped model (a loss's weights) are set aside.
    Returns (state, the prefix, the keys set aside)."""
    best = max(_PREFIXES, key=lambda p: (sum(k.removeprefix(p) in expected for k in state if k.startswith(p)), -len(p)))
    if not best:
        return dict(state), "", []
    inside = {k.removeprefix(best): v for k, v in state.items() if k.startswith(best)}
    return inside, best, sorted(k for k in state if not k.startswith(best))


def import_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str,
    classes: tuple[str, ...],
    out: str | os.PathLike,
    input_size: int | None = None,
    normalization: Normalization = IMAGENET_NORMALIZATION,
) -> LoadedModel:
    """Load the weights at `path` into `arch` with `len(classes)` outputs and save them with a card at `out`
    (.safetensors). A mismatch names the missing and unexpected keys and the shapes that differ."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    architecture = get_architecture(arch)
    meta = ModelMeta(
        arch=arch,
        classes=tuple(classes),
        input_size=input_size or architecture.input_size,
        normalization=normalization,
    )
    state, _ = read_weights(path)
    module = build_model(arch, len(classes))
    state, prefix, set_aside = strip_prefix(state, set(module.state_dict()))
    check_state(state, module, meta, path)
    module.load_state_dict(state)
    module.eval()
    imported = {"from": path.name, "sha256": file_sha256(path), "prefix": prefix, "set_aside": set_aside}
    meta = replace(meta, training={"imported": imported})
    saved = save_checkpoint(module, meta, out)
    return LoadedModel(module=module, meta=meta, path=saved, sha256=file_sha256(saved))
