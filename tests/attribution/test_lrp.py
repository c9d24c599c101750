"""LRP with zennit: conservation, canonizers that change nothing, scoped hooks, targets and bad input."""

import numpy as np
import pytest
import torch

from backend.attribution import class_heatmaps, concept_heatmaps, lrp, lrp_context
from backend.data import view_batch
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.models import LoadedModel, ModelMeta, build_model, get_architecture, load_checkpoint


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def _clean(module: torch.nn.Module) -> bool:
    """No hooks of any kind left, and no canonizer attributes."""
    for m in module.modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None):
            return False
        if hasattr(m, "canonizer_sum") or "forward" in m.__dict__:
            return False
    return True


def _bias_free(model: LoadedModel) -> LoadedModel:
    """The default model's weights with every bias and batch-norm shift removed: LRP then conserves relevance."""
    module = build_model("vgg_compact", 3)
    module.load_state_dict(model.module.state_dict())
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.zero_()
                m.running_mean.zero_()
    return LoadedModel(module=module.double().eval(), meta=model.meta)


def test_lrp_conserves_relevance_on_a_bias_free_model(model, small_dataset):
    free = _bias_free(model)
    x, _ = view_batch(small_dataset.split("test"), range(16), model.meta.normalization)
    heat = class_heatmaps(free, x.double())
    total = heat.relevance.sum(dim=(1, 2, 3))
    logit = heat.logits[torch.arange(16), heat.targets]
    assert heat.method == "lrp"
    assert torch.allclose(total, logit, rtol=0.05), (total, logit)


def _randomise_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return module.eval()


@pytest.mark.parametrize("arch", ["vgg_compact", "resnet18", "efficientnet_b0", "vgg16"])
def test_canonizers_leave_outputs_unchanged_and_are_removed(arch):
    module = _randomise_batch_norm(build_model(arch, 3)).double()  # float64: differences are the canonizer's
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = module(x)
        handles = [h for c in get_architecture(arch).canonizers() for h in c.apply(module)]
        try:
            canonized = module(x)
        finally:
            for handle in handles:
                handle.remove()
        after = module(x)
    torch.testing.assert_close(canonized, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert _clean(module)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0"])
def test_lrp_runs_on_every_architecture_family(arch):
    module = _randomise_batch_norm(build_model(arch, 3))
    meta = ModelMeta(arch=arch, classes=("a", "b", "c"), input_size=64)
    heat = class_heatmaps(LoadedModel(module=module, meta=meta), torch.rand(2, 3, 64, 64))
    assert heat.relevance.shape == (2, 3, 64, 64) and torch.isfinite(heat.relevance).all()
    assert heat.relevance.abs().sum() > 0 and _clean(module)


def test_attribution_changes_nothing_about_the_model(model, small_dataset):
    x, _ = view_batch(small_dataset.split("test"), range(4), model.meta.normalization)
    model.module.train()
    with torch.no_grad():
        before = model.module.eval()(x)
    model.module.train()
    class_heatmaps(model, x)
    concept_heatmaps(model, x, np.ones(128) / np.sqrt(128), "features.20")
    assert model.module.training  # mode restored
    with torch.no_grad():
        after = model.module.eval()(x)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert _clean(model.module)


def test_hooks_are_removed_when_attribution_fails(model):
    with pytest.raises(RuntimeError, match="boom"):
        with lrp_context(model):
            raise RuntimeError("boom")
    with pytest.raises(ConfigError, match="does not fit layer"):
        concept_heatmaps(model, torch.rand(1, 3, 64, 64), np.ones(7), "features.20")
    assert _clean(model.module)


def test_targets_predicted_true_and_given(model, small_dataset):
    x, labels = view_batch(small_dataset.split("test"), range(6), model.meta.normalization)
    predicted = class_heatmaps(model, x)
    assert torch.equal(predicted.targets, predicted.logits.argmax(1))
    assert torch.equal(class_heatmaps(model, x, "true", labels).targets, labels)
    given = class_heatmaps(model, x, 2)
    assert (given.targets == 2).all()
    assert not torch.allclose(given.relevance, class_heatmaps(model, x, 0).relevance)


@pytest.mark.parametrize(
    "images, target, message",
    [
        (torch.rand(1, 3, 32, 32), "predicted", "takes 64x64 images, got 32x32"),
        (torch.rand(1, 1, 64, 64), "predicted", "3 colour channels, got 1"),
        (torch.rand(3, 64, 64), "predicted", r"batch of images \(N, 3, 64, 64\)"),
        (torch.full((1, 3, 64, 64), float("nan")), "predicted", "NaN"),
        (torch.rand(2, 3, 64, 64), 3, "out of range"),
        (torch.rand(2, 3, 64, 64), [0, -1], "out of range"),
        (torch.rand(2, 3, 64, 64), [0], "one target per image"),
        (torch.rand(2, 3, 64, 64), "true", "needs the samples' labels"),
        (torch.rand(2, 3, 64, 64), "likely", "unknown target"),
    ],
)
def test_bad_input_is_refused(model, images, target, message):
    with pytest.raises(ConfigError, match=message):
        class_heatmaps(model, images, target)


def test_gradient_x_input_fallback_is_the_plain_product(model, small_dataset):
    x, _ = view_batch(small_dataset.split("test"), range(3), model.meta.normalization)
    heat = class_heatmaps(model, x, method="gradient_x_input")
    xg = x.clone().requires_grad_(True)
    logits = model.module(xg)
    (grad,) = torch.autograd.grad(logits[torch.arange(3), heat.targets].sum(), xg)
    torch.testing.assert_close(heat.relevance, (grad * x).detach())
    assert heat.method == "gradient_x_input"


def test_concept_heatmaps_point_at_the_planted_artifact(model, small_dataset):
    from backend.concepts import cached_activations, fit_cav

    train = cached_activations(model, small_dataset.split("train"), small_dataset.dataset_id, "features.20")
    cav = fit_cav(np.asarray(train.values), train.has_artifact.astype(int))
    view = small_dataset.split("test", "attacked")
    x, _ = view_batch(view, range(20), model.meta.normalization)
    maps = concept_heatmaps(model, x, cav.vector, "features.20")
    masks = np.stack([view.mask(i) for i in range(20)])
    assert maps.shape == (20, 64, 64)
    positive = np.clip(maps, 0, None)
    inside = (positive * masks).sum() / positive.sum()
    assert inside > 3 * masks.mean()  # relevance concentrates on the artifact far beyond its area share


def test_large_batches_are_explained_in_chunks_with_the_same_result(model, small_dataset, monkeypatch):
    x, labels = view_batch(small_dataset.split("val"), list(range(7)), model.meta.normalization)
    whole = class_heatmaps(model, x, target="true", labels=labels)
    cav = np.random.default_rng(0).normal(size=64)  # features.13: 64 channels
    concept_whole = concept_heatmaps(model, x, cav, "features.13")
    monkeypatch.setattr(lrp, "_LRP_BATCH_PIXELS", 3 * model.meta.input_size**2)  # chunks of 3: 3 + 3 + 1
    assert lrp.lrp_batch_size(model) == 3
    chunked = class_heatmaps(model, x, target="true", labels=labels)
    torch.testing.assert_close(chunked.relevance, whole.relevance, rtol=1e-5, atol=1e-6)
    assert torch.equal(chunked.targets, labels) and chunked.logits.shape == whole.logits.shape
    by_index = class_heatmaps(model, x, target=[1, 0, 2, 1, 0, 2, 1])
    assert by_index.targets.tolist() == [1, 0, 2, 1, 0, 2, 1]
    np.testing.assert_allclose(concept_heatmaps(model, x, cav, "features.13"), concept_whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="one target per image"):
        class_heatmaps(model, x, target=[0, 1])
