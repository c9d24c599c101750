"""P-ClArC's projection belongs to the model: a deepcopy or a save/load round trip behaves like the original, and a
copy keeps computing with its own layers when the original changes afterwards."""

import copy

import torch

from backend.models import (
    ModelMeta,
    attach_projection,
    build_model,
    capture_layer,
    find_projection,
    load_checkpoint,
    save_checkpoint,
)

LAYER = "features.18"  # a convolution: the layer itself has weights that a copy must not share


def _projected(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = build_model("vgg_compact", 3).eval()
    h = torch.nn.functional.normalize(torch.randn(128), dim=0)
    return attach_projection(module, LAYER, h, torch.full((8, 8), 0.25))


def test_the_layer_output_has_the_fixed_cav_component():
    module = _projected()
    h = find_projection(module, LAYER).h
    with torch.no_grad(), capture_layer(module, LAYER) as captured:
        module(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close((captured[0] * h.view(1, -1, 1, 1)).sum(1), torch.full((2, 8, 8), 0.25))


def test_a_deepcopy_uses_its_own_layers_after_the_original_changes():
    original = _projected()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        expected = original(x)
        copied = copy.deepcopy(original)
        for p in original.parameters():  # change the original after the copy
            p.add_(1.0)
        find_projection(original, LAYER).offset.add_(5.0)
        changed = original(x)
        again = copied(x)
    assert not torch.allclose(changed, expected)
    torch.testing.assert_close(again, expected)
    assert find_projection(copied, LAYER) is not find_projection(original, LAYER)


def test_a_saved_projected_model_loads_with_its_projection(tmp_path):
    module = _projected()
    projection = find_projection(module, LAYER)
    meta = ModelMeta(
        arch="vgg_compact",
        classes=("a", "b", "c"),
        input_size=64,
        training={
            "correction": {
                "projection": {"layer": LAYER, "h": projection.h.tolist(), "offset": projection.offset.tolist()}
            }
        },
    )
    path = save_checkpoint(module, meta, tmp_path / "projected.safetensors")
    loaded = load_checkpoint(path)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), module(x))
