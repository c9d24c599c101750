"""A concept projection carried by the model itself (P-ClArC): a layer whose output has the component of every
position along one CAV, or along each of several, set to a fixed value. It lives in the model as a child module of
the layer plus a forward hook, so a deepcopy, a `state_dict` round trip (with the card's projection re-attached) or
a move to another device behaves exactly like the original."""

from __future__ import annotations

import torch
import torch.nn as nn

from backend.errors import ConfigError
from backend.models.layers import get_layer

__all__ = ["ConceptProjection", "attach_projection", "find_projection", "project_along", "project_onto"]

_CHILD = "clarc_projection"


def project_along(acts: torch.Tensor, h: torch.Tensor, target: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Move each position's projection h·a(p) of activations (N, C, ...) to `target` ((...) or a scalar, broadcast
    over the batch): a + s (target - h·a) h, for a unit CAV h (C,)."""
    shape = (1, -1) + (1,) * (acts.ndim - 2)
    proj = (acts * h.view(shape)).sum(dim=1, keepdim=True)
    return acts + strength * (target.unsqueeze(0).unsqueeze(0) - proj) * h.view(shape)


def project_onto(acts: torch.Tensor, hs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Set the projections of activations (N, C, ...) on each of K unit CAVs `hs` (K, C) to `targets` (K, ...),
    moving only within their span: a + Hᵀ (H Hᵀ)⁻¹ (t - H a). With one CAV this is `project_along`; with several
    directions that are not orthogonal, setting them one after the other would undo the earlier ones."""
    if hs.shape[0] == 1:
        return project_along(acts, hs[0], targets[0])
    proj = torch.einsum("kc,nc...->nk...", hs, acts)
    coefficients = torch.einsum("jk,nk...->nj...", torch.linalg.inv(hs @ hs.T), targets.unsqueeze(0) - proj)
    return acts + torch.einsum("kc,nk...->nc...", hs, coefficients)


class ConceptProjection(nn.Module):
    """a -> a with its component along each CAV h_k (rows of `h`, (K, C); a single (C,) CAV is K = 1) set to
    `offset` (K, ...; the clean-sample mean per position). Its buffers are not persistent, so the model's state
    dict keeps the plain architecture's keys."""

    def __init__(self, h: torch.Tensor, offset: torch.Tensor) -> None:
        super().__init__()
        h = torch.as_tensor(h, dtype=torch.float32)
        offset = torch.as_tensor(offset, dtype=torch.float32)
        if h.ndim == 1:
            h, offset = h.unsqueeze(0), offset.unsqueeze(0)
        self.register_buffer("h", h, persistent=False)
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        return project_onto(acts, self.h.to(acts.dtype), self.offset.to(acts.dtype))


def _project_output(layer: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    """The forward hook: the layer's own projection child, so a copied model uses its copied projection."""
    return getattr(layer, _CHILD)(output)


def attach_projection(module: nn.Module, layer: str, h: torch.Tensor, offset: torch.Tensor) -> nn.Module:
    """Make `layer` of `module` output its projected activations (P-ClArC) along one CAV `h` (C,) or several
    (K, C), with `offset` (...) or (K, ...); returns the module, edited in place."""
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
