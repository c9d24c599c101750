"""Activations: the right tensor from the right layer, pooling, the disk cache and its invalidation, scoped hooks."""

import numpy as np
import pytest
import torch
from PIL import Image

from backend.concepts import cached_activations, collect_activations
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError, DatasetError
from backend.models import LoadedModel, build_model, get_layer, load_checkpoint


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def _no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_candidate_layers_list_names_types_and_shapes(model):
    layers = {info.name: info for info in model.layers()}
    assert layers["features.20"].shape == (128, 8, 8) and layers["features.20"].type == "ReLU"
    assert layers["classifier.6"].shape == (3,)
    assert _no_hooks(model.module)


def test_activations_equal_the_layer_output_and_pool_correctly(model, small_dataset):
    view = small_dataset.split("train")
    idx = [0, 3, 7]
    full = collect_activations(model, view, "features.20", "none", indices=idx)
    x = torch.stack([view.with_normalization(model.meta.normalization)[i][0] for i in idx])
    with torch.no_grad():
        reference = model.module.features[:21](x).numpy()
    np.testing.assert_allclose(full, reference, rtol=1e-5, atol=1e-6)
    maxed = collect_activations(model, view, "features.20", "max", indices=idx)
    meaned = collect_activations(model, view, "features.20", "mean", indices=idx)
    np.testing.assert_allclose(maxed, reference.max(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(meaned, reference.mean(axis=(2, 3)), rtol=1e-5)
    events = []
    collect_activations(model, view, "features.20", batch_size=50, on_progress=events.append)
    assert [e.step for e in events] == [1, 2, 3] and events[-1].metrics["samples"] == len(view)
    assert _no_hooks(model.module) and not model.module.training


def _entries(workspace):
    """The values files of the activation cache (not their filled flags)."""
    files = (workspace / "cache" / "activations").glob("*.npy")
    return sorted(p for p in files if not p.name.endswith(".filled.npy"))


def test_second_request_is_a_file_read_and_changes_invalidate(model, small_dataset, tmp_path):
    def request(m=model, ds=small_dataset, layer="features.20", pooling="max"):
        return cached_activations(m, ds.split("train"), ds.dataset_id, layer, pooling, workspace=tmp_path)

    first = request()
    files = _entries(tmp_path)
    second = request()
    assert isinstance(second.values, np.memmap) and second.values.filename == first.values.filename
    assert _entries(tmp_path) == files
    np.testing.assert_array_equal(first.values, second.values)
    assert second.sample_ids == small_dataset.split("train").sample_ids

    changed = load_checkpoint(DEFAULT_CHECKPOINT)
    with torch.no_grad():
        changed.module.features[18].weight.mul_(1.5)
    changed.sha256 = ""  # an edited in-memory model is fingerprinted by its weights
    other_data = open_dataset("synthderm?p=0.5&n_train=120&n_val=30&n_test=60", tmp_path)
    for variant in (request(m=changed), request(ds=other_data), request(layer="features.17"), request(pooling="mean")):
        assert variant.values.filename != first.values.filename
    assert len(_entries(tmp_path)) == 5


def test_subsets_are_cached_separately(model, small_dataset, tmp_path):
    view = small_dataset.split("val")
    part = cached_activations(model, view, small_dataset.dataset_id, "features.20", indices=[2, 5], workspace=tmp_path)
    whole = cached_activations(model, view, small_dataset.dataset_id, "features.20", workspace=tmp_path)
    assert part.values.shape == (2, 128) and part.sample_ids == (view.sample_ids[2], view.sample_ids[5])
    np.testing.assert_allclose(part.values, whole.values[[2, 5]], rtol=1e-6)


def test_unknown_layer_suggests_real_ones(model, small_dataset):
    with pytest.raises(ConfigError, match=r"no layer 'features\.200'.*did you mean"):
        collect_activations(model, small_dataset.split("val"), "features.200")
    with pytest.raises(ConfigError, match="unknown pooling"):
        collect_activations(model, small_dataset.split("val"), "features.20", "median")
    assert get_layer(model.module, "classifier.6") is model.module.classifier[6]


def test_hook_is_removed_when_reading_an_image_fails(model, tmp_path):
    for name in ("nevus", "melanoma", "seborrheic_keratosis"):
        for i in range(4):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.new("RGB", (64, 64), (180, 120, 100)).save(tmp_path / name / f"{i}.png")
    ds = open_dataset(f"folder:{tmp_path}?size=64")
    view = ds.split("train")
    (tmp_path / view.sample_ids[1]).with_suffix(".png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="cannot read image"):
        cached_activations(model, view, ds.dataset_id, "features.20", workspace=tmp_path)
    assert _no_hooks(model.module)
    left = [p.name for p in (tmp_path / "cache" / "activations").glob("*") if p.suffix != ".lock"]
    assert not left  # nothing half-written left behind (lock files are no cache content)


def test_nan_activations_are_an_error(small_dataset, tmp_path, model):
    module = build_model("vgg_compact", 3)
    with torch.no_grad():
        module.features[0].weight.fill_(float("nan"))
    broken = LoadedModel(module=module.eval(), meta=model.meta)
    with pytest.raises(ConfigError, match="NaN or infinite activations"):
        cached_activations(
            broken, small_dataset.split("val"), small_dataset.dataset_id, "features.20", workspace=tmp_path
        )
