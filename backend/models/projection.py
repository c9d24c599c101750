"""A concept projection carried by the model itself (P-ClArC): a layer whose output has the CAV component of every
position set to a fixed value. It lives in the model as a child module of the layer plus a forward hook, so a
deepcopy, a `state_dict` round trip (with the card's projection re-attached) or a move to another device behaves
exactly like the original."""

from __future__ import annotations

import torch
import torch.nn as nn

from backend.errors import ConfigError
from backend.models.layers import get_layer

__all__ = ["ConceptProjection", "attach_projection", "find_projection", "project_along"]

_CHILD = "clarc_projection"


def project_along(acts: torch.Tensor, h: torch.Tensor, target: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Move each position's projection h·a(p) of activations (N, C, ...) to `target` ((...) or a scalar, broadcast
    over the batch): a + s (target - h·a) h, for a unit CAV h (C,)."""
    shape = (1, -1) + (1,) * (acts.ndim - 2)
    proj = (acts * h.view(shape)).sum(dim=1, keepdim=True)
    return acts + strength * (target.unsqueeze(0).unsqueeze(0) - proj) * h.view(shape)


class ConceptProjection(nn.Module):
    """a -> a - (h·a(p) - offset(p)) h: the CAV component of every position set to `offset` (the clean-sample
    mean). Its buffers are not persistent, so the model's state dict keeps the plain architecture's keys."""

    def __init__(self, h: torch.Tensor, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("h", torch.as_tensor(h, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32), persistent=False)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        return project_along(acts, self.h.to(acts.dtype), self.offset.to(acts.dtype))


def _project_output(layer: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    """The forward hook: the layer's own projection child, so a copied model uses its copied projection."""
    return getattr(layer, _CHILD)(output)


def attach_projection(module: nn.Module, layer: str, h: torch.Tensor, offset: torch.Tensor) -> nn.Module:
    """Make `layer` of `module` output its projected activations (P-ClArC); returns the module, edited in place."""
    target = get_layer(module, layer)
    if hasattr(target, _CHILD):
        raise ConfigError(f"layer {layer} already carries a P-ClArC projection")
    device = next(module.parameters()).device
    target.add_module(_CHILD, ConceptProjection(h, offset).to(device))
    target.register_forward_hook(_project_output)
    return module


def find_projection(module: nn.Module, layer: str) -> ConceptProjection | None:
    """The projection `layer` carries, if any."""
    return getattr(get_layer(module, layer), _CHILD, None)
