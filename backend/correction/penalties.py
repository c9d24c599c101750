"""The penalty math of RR-ClArC as pure tensor functions: the scalar whose gradient must not follow the CAV, and the
aggregation of its directional derivatives over positions."""

from __future__ import annotations

import torch

from backend.errors import ConfigError

__all__ = ["directional_penalty", "gradient_target"]


def gradient_target(
    logits: torch.Tensor,
    target: str,
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    class_index: int | None = None,
) -> torch.Tensor:
    """The scalar whose gradient RR-ClArC makes orthogonal to the CAV (summed over the batch)."""
    if class_index is not None:
        return logits[:, class_index].sum()
    if target == "max_logit":
        return logits.max(dim=1).values.sum()
    if target == "target_logit":
        return logits.gather(1, labels.view(-1, 1)).sum()
    if target == "all_logits":
        return logits.sum()
    if target == "all_logits_random":  # the seed's: every logit with a random sign
        signs = torch.where(torch.rand(logits.shape, generator=generator) < 0.5, 1.0, -1.0).to(logits)
        return (logits * signs).sum()
    if target == "random_logit":  # one random class per sample: an unbiased estimate of penalising every logit
        picks = torch.randint(logits.shape[1], (len(logits), 1), generator=generator).to(logits.device)
        return logits.gather(1, picks).sum()
    if target == "logprobs":
        return torch.log_softmax(logits, dim=1).sum()
    raise ConfigError(f"unknown gradient target {target!r}")


def directional_penalty(grad: torch.Tensor, h: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Aggregate the directional derivative g(p)·h of a layer gradient (N, C, ...) along a CAV (C,) at every spatial
    position: `l1` mean |g·h|, `l2` mean (g·h)², `cosine` mean |cos(g(p), h)| (scale-free). The `_mean` variants
    (the seed's `l1_mean`, `l2_mean`, `cosine_mean`) first average the gradient over the positions.

    For a concept subspace, `h` is an orthonormal basis B (r, C) and the derivative is the gradient's projection
    B g(p): `l2` is mean ||B g||² = Σ_j (g·b_j)², the rank-1 penalties summed over the directions; `l1` mean ||B g||
    and `cosine` mean ||B g|| / ||g|| (the cosine of the angle to the subspace) depend only on the span."""
    base, _, spatial_mean = aggregation.partition("_")
    if spatial_mean not in ("", "mean") or base not in ("l1", "l2", "cosine"):
        raise ConfigError(f"unknown aggregation {aggregation!r}")
    if spatial_mean and grad.ndim > 2:
        grad = grad.mean(dim=tuple(range(2, grad.ndim)))
    if h.ndim == 2:
        return _subspace_penalty(grad, h, base)
    shape = (1, -1) + (1,) * (grad.ndim - 2)
    dd = (grad * h.view(shape)).sum(dim=1)
    if base == "l1":
        return dd.abs().mean()
    if base == "l2":
        return dd.pow(2).mean()
    norms = grad.norm(dim=1) * h.norm()
    return (dd.abs() / norms.clamp_min(1e-12)).mean()


def _subspace_penalty(grad: torch.Tensor, basis: torch.Tensor, base: str) -> torch.Tensor:
    """`directional_penalty` along an orthonormal basis (r, C) of a gradient (N, C, ...)."""
    if basis.shape[1] != grad.shape[1]:
        raise ConfigError(f"a concept basis of {basis.shape[1]} channels for a gradient of {grad.shape[1]}")
    projected = torch.einsum("nc...,rc->nr...", grad, basis.to(grad.dtype))
    if base == "l2":
        return projected.pow(2).sum(dim=1).mean()
    length = torch.linalg.vector_norm(projected, dim=1)
    if base == "l1":
        return length.mean()
    return (length / grad.norm(dim=1).clamp_min(1e-12)).mean()
