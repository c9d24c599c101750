"""Layers of a model by name: look one up, record its output, list the layers a CAV can live in, find the logits
layer; and `eval_mode`, the one way to run a shared model in eval mode (under its lock, restored afterwards)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from backend.errors import ConfigError
from backend.models.locking import module_lock

__all__ = ["LayerInfo", "candidate_layers", "capture_layer", "capture_layers", "eval_mode", "get_layer", "output_layer"]

# Module types worth offering as CAV layers: convolutions, their normalisation and activations, blocks, heads.
_LAYER_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.SiLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """A layer a CAV can live in: its module name, module type and per-sample output shape."""

    name: str
    type: str
    shape: tuple[int, ...]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode and locked against other threads for the block; its train/eval mode is restored after.
    The dashboard shares loaded models between sessions, so every switch of mode happens under the lock."""
    with module_lock(module):
        was_training = module.training
        module.eval()
        try:
            yield module
        finally:
            module.train(was_training)


def get_layer(module: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name`; an unknown name is an error that suggests the closest real ones."""
    modules = dict(module.named_modules())
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"the model has no layer {name!r}{hint}")
    return modules[name]


@contextmanager
def capture_layer(module: nn.Module, name: str) -> Iterator[list[torch.Tensor]]:
    """Record the outputs of layer `name` during forward passes inside the block; the hook is always removed."""
    with capture_layers(module, [name]) as captured:
        yield captured[name]


@contextmanager
def capture_layers(module: nn.Module, names: list[str]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the outputs of several layers (name -> list of outputs) during forward passes inside the block, so one
    pass serves them all; the hooks are always removed."""
    layers = {name: get_layer(module, name) for name in names}  # raises for unknown names before any hook
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    with module_lock(module):
        handles = [
            layer.register_forward_hook(lambda _m, _i, out, name=name: captured[name].append(out))
            for name, layer in layers.items()
        ]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()


def candidate_layers(module: nn.Module, input_size: int) -> list[LayerInfo]:
    """Layers with their output shapes, in forward order, from one dry run on a blank image."""
    shapes: dict[str, tuple[int, ...]] = {}
    names = {m: n for n, m in module.named_modules() if n}
    handles = []
    for sub, name in names.items():
        is_block = len(list(sub.children())) > 0 and "." not in name.split(".")[-1]
        if isinstance(sub, _LAYER_TYPES) or is_block:

            def hook(_m, _i, out, name=name):
                if isinstance(out, torch.Tensor) and name not in shapes:
                    shapes[name] = tuple(out.shape[1:])

            handles.append(sub.register_forward_hook(hook))
    device = next(module.parameters()).device
    with eval_mode(module):
        try:
            with torch.no_grad():
                module(torch.zeros(1, 3, input_size, input_size, device=device))
        finally:
            for handle in handles:
                handle.remove()
    modules = dict(module.named_modules())
    return [LayerInfo(n, type(modules[n]).__name__, s) for n, s in shapes.items()]


def output_layer(module: nn.Module, input_size: int, n_classes: int) -> str:
    """Name of the module that produces the logits: the last layer whose output is one value per class."""
    for info in reversed(candidate_layers(module, input_size)):
        if info.shape == (n_classes,):
            return info.name
    raise ConfigError(f"no layer of this model outputs {n_classes} class logits")
