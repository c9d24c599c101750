"""Every registered architecture builds without downloading anything, runs forward, and names its CAV layer."""

import pytest
import torch

from backend.errors import ConfigError
from backend.models import CompactVGG, architecture_names, build_model, get_architecture


def test_the_required_architectures_are_registered():
    assert {"vgg_compact", "vgg16", "resnet18", "efficientnet_b0"} <= set(architecture_names())


@pytest.mark.parametrize("name", architecture_names())
@pytest.mark.parametrize("num_classes", [2, 5])
def test_builds_and_runs_forward(name, num_classes):
    torch.manual_seed(0)
    arch = get_architecture(name)
    model = build_model(name, num_classes).eval()
    size = 64  # every architecture handles small inputs; the compact default is built for them
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    modules = dict(model.named_modules())
    assert arch.default_layer in modules, f"{name}: default layer {arch.default_layer} does not exist"
    assert not any(getattr(m, "inplace", False) for m in modules.values()), "in-place ops break LRP hooks"
    assert arch.canonizers()  # fresh canonizer objects for LRP


def test_compact_vgg_keeps_torchvision_vgg_naming():
    import torchvision

    compact = {k.rsplit(".", 1)[0] for k in build_model("vgg_compact", 3).state_dict()}
    full = {k.rsplit(".", 1)[0] for k in torchvision.models.vgg16_bn(weights=None, num_classes=3).state_dict()}
    assert {k.split(".")[0] for k in compact} == {"features", "classifier"}
    assert {k for k in compact if k.startswith("classifier")} == {k for k in full if k.startswith("classifier")}
    assert isinstance(build_model("vgg_compact", 3), CompactVGG)


def test_unknown_architecture_and_too_few_classes():
    with pytest.raises(ConfigError, match="unknown architecture 'alexnet'"):
        build_model("alexnet", 3)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("vgg_compact", 1)
