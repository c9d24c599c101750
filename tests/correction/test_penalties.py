"""The seed's penalty variants: `*_mean` aggregations average the gradient over positions first (checked against a
slow reference written as the seed's code does it), `all_logits_random` puts a random sign on every logit."""

import pytest
import torch

from backend.correction import RRClarcConfig, directional_penalty, gradient_target
from backend.errors import ConfigError


def _seed_reference(gradient: torch.Tensor, cav: torch.Tensor, aggregation: str) -> torch.Tensor:
    """As the seed's code: average over space (keeping the shape), flatten positions, then cosine / l2 / l1."""
    if "mean" in aggregation:
        gradient = gradient.mean((2, 3), keepdim=True).expand_as(gradient)
    g_flat = gradient.permute(1, 0, 2, 3).flatten(start_dim=1).permute(1, 0)
    if "cosine" in aggregation:
        return torch.nn.functional.cosine_similarity(g_flat, cav).abs().mean(0)
    if "l2" in aggregation:
        return ((g_flat * cav).sum(1) ** 2).mean(0)
    return (g_flat * cav).sum(1).abs().mean(0)


@pytest.mark.parametrize("aggregation", ["l1", "l2", "cosine", "l1_mean", "l2_mean", "cosine_mean"])
def test_aggregations_match_the_seeds_formulas(aggregation):
    torch.manual_seed(0)
    grad = torch.randn(5, 16, 4, 4, dtype=torch.float64)
    h = torch.nn.functional.normalize(torch.randn(16, dtype=torch.float64), dim=0)
    torch.testing.assert_close(directional_penalty(grad, h, aggregation), _seed_reference(grad, h, aggregation))


def test_the_mean_variants_ignore_where_the_gradient_sits():
    h = torch.zeros(4, dtype=torch.float64)
    h[0] = 1.0
    grad = torch.zeros(1, 4, 2, 2, dtype=torch.float64)
    grad[0, 0, 0, 0], grad[0, 0, 1, 1] = 1.0, -1.0  # along h at two positions, cancelling on average
    assert directional_penalty(grad, h, "l2") > 0
    assert directional_penalty(grad, h, "l2_mean") == 0


def test_all_logits_random_signs_every_logit_and_is_seeded():
    logits = torch.randn(6, 3, requires_grad=True)
    target = gradient_target(logits, "all_logits_random", torch.zeros(6), torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(target, logits)
    assert set(grad.flatten().tolist()) == {1.0, -1.0}
    again = gradient_target(logits, "all_logits_random", torch.zeros(6), torch.Generator().manual_seed(1))
    assert again.item() == pytest.approx(target.item())
    one = gradient_target(logits, "random_logit", torch.zeros(6), torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(one, logits)
    assert grad.sum(1).tolist() == [1.0] * 6  # one class per sample


def test_unknown_variants_are_refused():
    with pytest.raises(ConfigError, match="unknown aggregation"):
        directional_penalty(torch.zeros(1, 2, 2, 2), torch.ones(2), "l3_mean")
    with pytest.raises(ConfigError, match="unknown aggregation"):
        RRClarcConfig(aggregation="l2_max")


def _basis(n: int, r: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, r, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()


@pytest.mark.parametrize("aggregation", ["l1", "l2", "cosine", "l1_mean", "l2_mean", "cosine_mean"])
def test_a_basis_of_one_direction_is_the_cav_itself(aggregation):
    torch.manual_seed(1)
    grad = torch.randn(3, 8, 2, 2, dtype=torch.float64)
    h = _basis(8, 1)
    torch.testing.assert_close(directional_penalty(grad, h, aggregation), directional_penalty(grad, h[0], aggregation))


@pytest.mark.parametrize("aggregation", ["l2", "l2_mean"])
def test_the_l2_penalty_of_a_subspace_is_the_sum_over_its_directions(aggregation):
    torch.manual_seed(2)
    grad = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    basis = _basis(8, 3)
    expected = sum(directional_penalty(grad, b, aggregation) for b in basis)
    torch.testing.assert_close(directional_penalty(grad, basis, aggregation), expected)


def test_l1_and_cosine_of_a_subspace_are_the_length_of_the_projection_whatever_basis_spans_it():
    torch.manual_seed(3)
    grad = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    basis = _basis(8, 3)
    rotated = _basis(3, 3, seed=5) @ basis  # another orthonormal basis of the same span
    flat = grad.permute(0, 2, 3, 1).reshape(-1, 8)
    length = (flat @ basis.T).norm(dim=1)
    torch.testing.assert_close(directional_penalty(grad, basis, "l1"), length.mean())
    torch.testing.assert_close(directional_penalty(grad, basis, "cosine"), (length / flat.norm(dim=1)).mean())
    for aggregation in ("l1", "l2", "cosine"):
        torch.testing.assert_close(
            directional_penalty(grad, rotated, aggregation), directional_penalty(grad, basis, aggregation)
        )
    with pytest.raises(ConfigError, match="channels"):
        directional_penalty(grad, _basis(6, 2), "l2")
