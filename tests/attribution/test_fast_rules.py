"""Relayed LRP rules give zennit's own heatmaps, on every registered architecture and for both composites."""

import numpy as np
import pytest
import torch
from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat

from backend.attribution import class_heatmaps, concept_heatmaps
from backend.models import LoadedModel, ModelMeta, build_model, eval_mode, get_architecture


def _model(arch: str, size: int) -> LoadedModel:
    torch.manual_seed(0)
    module = build_model(arch, 4)
    with torch.no_grad():  # batch-norm statistics that are not the identity, so the merge matters
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    meta = ModelMeta(arch=arch, classes=("a", "b", "c", "d"), input_size=size, dataset="test")
    return LoadedModel(module=module, meta=meta)


def _zennit(model: LoadedModel, x: torch.Tensor, composite, start_layer: str | None = None, cav=None) -> np.ndarray:
    """The same heatmap through zennit's unmodified hooks (the reference the relayed rules must reproduce)."""
    x = x.clone().requires_grad_(True)
    canonizers = get_architecture(model.meta.arch).canonizers()
    with eval_mode(model.module) as module, composite(canonizers=canonizers).context(module) as modified:
        if start_layer is None:
            logits = modified(x)
            start = torch.zeros_like(logits)
            start[torch.arange(len(x)), logits.argmax(1)] = 1.0
            (grad,) = torch.autograd.grad(logits, x, grad_outputs=start * logits.detach())
            return grad.sum(1).numpy()
        captured = []
        handle = dict(modified.named_modules())[start_layer].register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            modified(x)
        finally:
            handle.remove()
        acts = captured[0]
        start = acts.detach().clamp(min=0) * torch.as_tensor(cav).view(1, -1, 1, 1)
        (grad,) = torch.autograd.grad(acts, x, grad_outputs=start)
        return grad.sum(1).numpy()


@pytest.mark.parametrize(("arch", "size"), [("vgg_compact", 32), ("resnet18", 64), ("efficientnet_b0", 64)])
def test_relayed_rules_reproduce_zennit(arch, size):
    model = _model(arch, size)
    x = torch.randn(3, 3, size, size)
    ours = class_heatmaps(model, x).maps
    reference = _zennit(model, x, EpsilonPlusFlat)
    assert np.abs(reference).max() > 0
    np.testing.assert_array_equal(ours, reference)  # bit for bit

    layer = get_architecture(arch).default_layer
    channels = dict(model.module.named_modules())[layer]
    acts = []
    handle = channels.register_forward_hook(lambda m, i, o: acts.append(o))
    with eval_mode(model.module) as module, torch.no_grad():
        module(x)
    handle.remove()
    cav = np.random.default_rng(0).normal(size=acts[0].shape[1]).astype(np.float32)
    ours = concept_heatmaps(model, x, cav, layer)
    reference = _zennit(model, x, EpsilonAlpha2Beta1, layer, cav)
    assert np.abs(reference).max() > 0
    np.testing.assert_array_equal(ours, reference)  # bit for bit
    assert class_heatmaps(model, x[:0]).maps.shape == (0, size, size)  # an empty batch is no error


def test_relayed_rules_leave_gradients_alone_outside_attribution():
    """Outside a heatmap (no gradient wanted, or the rules' context left) the model computes as before."""
    model = _model("resnet18", 64)
    x = torch.randn(2, 3, 64, 64)
    with eval_mode(model.module) as module, torch.no_grad():
        before = module(x)
    class_heatmaps(model, x)
    with eval_mode(model.module) as module, torch.no_grad():
        assert torch.equal(module(x), before)


def test_pair_sums_add_as_zennits_sum_does():
    """The residual sums the canonizers use are `torch.sum` over the stacked branches, bit for bit."""
    from zennit.layer import Sum

    from backend.models.canonizers import PairSum

    torch.manual_seed(0)
    branches = torch.randn(2, 4, 64, 14, 14)
    branches[:, :, :8] = 0.0  # zeros and signed zeros where ReLU'd branches meet
    branches[1, :, :4] = -0.0
    stacked = torch.stack(list(branches), dim=-1)
    assert torch.equal(PairSum()(stacked), Sum()(stacked))
    assert torch.equal(torch.signbit(PairSum()(stacked)), torch.signbit(Sum()(stacked)))
    three = torch.randn(4, 8, 3)
    assert torch.equal(PairSum()(three), Sum()(three))  # not a pair: torch.sum itself
