"""Split a model at a layer into the part below it and the part above it, so that training can start from cached
activations. Works for chains of top-level children (torchvision VGG, ResNet, EfficientNet and the compact VGG:
features/stem ... head, with a flatten before the last child) and layers inside nested Sequentials of that chain;
the split is verified numerically against the whole model before it is used."""

from __future__ import annotations

import torch
import torch.nn as nn

from backend.errors import ConfigError
from backend.models.layers import capture_layer, eval_mode

__all__ = ["split_at_layer"]


def _chain_after(root: nn.Module, path: list[str]) -> list[nn.Module]:
    """The modules that run after `path` in forward order: later siblings at every level, flatten before the head."""
    tail: list[nn.Module] = []
    parent = root
    for depth, name in enumerate(path):
        children = list(parent.named_children())
        names = [n for n, _ in children]
        if name not in names:
            raise ConfigError(f"layer {'.'.join(path)} is not in the model")
        index = names.index(name)
        later = [m for _, m in children[index + 1 :]]
        if depth == 0:
            later = later[:-1] + [nn.Flatten(1)] + later[-1:] if later else later
        elif not isinstance(parent, nn.Sequential):
            raise ConfigError(f"cannot split inside {'.'.join(path[:depth])}: it is not a Sequential")
        tail = later + tail
        parent = dict(children)[name]
    return tail


def split_at_layer(module: nn.Module, layer: str, input_size: int) -> nn.Module:
    """The part of `module` above `layer`: it maps the layer's output to the logits and shares the model's parameters.
    Raises ConfigError when the model cannot be split there (its forward is not a plain chain at that point); the
    split is verified on a random input."""
    path = layer.split(".")
    upper = nn.Sequential(*_chain_after(module, path))
    with eval_mode(module), capture_layer(module, layer) as captured:
        weight = next(module.parameters())
        probe = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0), dtype=weight.dtype)
        x = probe.to(weight.device)
        with torch.no_grad():
            whole = module(x)
            parts = upper(captured[0])
    if parts.shape != whole.shape or not torch.allclose(parts, whole, rtol=1e-4, atol=1e-5):
        raise ConfigError(f"the model cannot be split at {layer}: the part above it does not reproduce the output")
    return upper
