"""Dataset specs and views: planting is exact, attacked/clean views share images, bad specs say what is wrong."""

import numpy as np
import pytest
import torch

from backend.data import Normalization, open_dataset, parse_spec
from backend.errors import ConfigError
from tests.conftest import SMALL_SPEC


def test_bare_synthderm_is_the_default_biased_benchmark():
    spec = parse_spec("synthderm")
    assert spec.artifact == "skin_marker" and spec.classes == ("melanoma",) and 0 < spec.p < 1
    assert parse_spec(str(spec)) == spec  # the canonical string round-trips
    assert parse_spec("synthderm?artifact=none").artifact is None


def test_spec_parameters_and_identity():
    spec = parse_spec("synthderm?artifact=ruler&p=0.25&classes=nevus,melanoma&seed=2&size=48&n_train=10")
    assert (spec.artifact, spec.p, spec.classes, spec.seed, spec.size, spec.n_train) == (
        "ruler",
        0.25,
        ("nevus", "melanoma"),
        2,
        48,
        10,
    )
    assert spec.dataset_id != parse_spec("synthderm?artifact=ruler&p=0.3&classes=nevus,melanoma&seed=2").dataset_id
    assert parse_spec("isic:/data/isic").path == "/data/isic"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("mnist", "must start with one of"),
        ("synthderm?artifact=sticker", "unknown artifact 'sticker'"),
        ("synthderm?p=1.5", r"p must be in \[0, 1\]"),
        ("synthderm?p=lots", "is not a number"),
        ("synthderm?size=4", "size must be between"),
        ("synthderm?colour=red", "unknown dataset spec parameters: colour"),
        ("isic", "need a folder"),
        ("synthderm?classes=basal_cell", "basal_cell"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(bad, message, workspace):
    with pytest.raises(ConfigError, match=message):
        open_dataset(bad, workspace)


def test_planting_is_exact_and_only_in_the_chosen_classes(small_dataset):
    train = small_dataset.split("train")
    mel = train.labels == small_dataset.classes.index("melanoma")
    assert train.has_artifact[mel].sum() == round(small_dataset.planting.p * mel.sum())
    assert not train.has_artifact[~mel].any()
    assert small_dataset.split("val").has_artifact.any()
    assert not small_dataset.split("test").has_artifact.any()  # the test split is held out clean


def test_clean_and_attacked_views_are_the_same_images_but_the_artifact(small_dataset):
    clean, attacked = small_dataset.split("test", "clean"), small_dataset.split("test", "attacked")
    assert clean.sample_ids == attacked.sample_ids and np.array_equal(clean.labels, attacked.labels)
    assert attacked.has_artifact.all() and not clean.has_artifact.any()
    for i in range(5):
        image, mask = attacked.image_and_mask(i)
        base = clean.image(i)
        assert mask.any() and np.array_equal(image[~mask], base[~mask])
        assert not np.array_equal(image, base)
        assert np.array_equal(image, attacked.image(i))  # the same artifact every time
    assert not clean.mask(0).any()


def test_attacked_view_can_use_another_artifact(small_dataset):
    view = small_dataset.split("test", "attacked", artifact="ruler")
    assert view.artifact == "ruler" and view.mask(0).any()
    no_planting = open_dataset("synthderm?artifact=none&n_train=5&n_val=5&n_test=5")
    with pytest.raises(ConfigError, match="name one"):
        no_planting.split("test", "attacked")
    with pytest.raises(ConfigError, match="unknown split"):
        no_planting.split("holdout")
    with pytest.raises(ConfigError, match="unknown view"):
        no_planting.split("test", "blurred")


def test_items_are_normalised_tensors(small_dataset):
    norm = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    view = small_dataset.split("train", normalization=norm)
    x, y = view[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and isinstance(y, int)
    raw = torch.from_numpy(view.image(0)).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, (raw - 0.5) / 0.25)
    assert torch.allclose(view.with_normalization(Normalization())[0][0], raw)


def test_describe_counts_match_the_splits(small_dataset):
    info = small_dataset.describe()
    assert info["spec"] == str(parse_spec(SMALL_SPEC))
    assert sum(info["counts"]["train"].values()) == 120
    assert info["planting"]["artifact"] == "skin_marker"


def _train_file(folder):
    """The cached train split of 8 images (the other splits have 2)."""
    (path,) = [p for p in folder.glob("*.npy") if len(np.load(p, mmap_mode="r")) == 8]
    return path


def test_corrupt_cache_file_is_regenerated(tmp_path):
    first = open_dataset("synthderm?n_train=8&n_val=2&n_test=2", tmp_path).split("train").image(3)
    cached = _train_file(tmp_path / "cache" / "synthderm")
    cached.write_bytes(b"not a numpy file")
    from backend.data import embedded

    embedded._MEMORY.clear()
    again = open_dataset("synthderm?n_train=8&n_val=2&n_test=2", tmp_path).split("train").image(3)
    assert np.array_equal(first, again)


def test_a_new_workspace_gets_the_images_without_rendering_them_again(tmp_path, monkeypatch):
    """Rendered images are shared in memory by name (they depend on nothing else), and every workspace still gets
    its own cache file, which a corrupt copy does not survive."""
    from backend.data import embedded

    spec = "synthderm?n_train=8&n_val=2&n_test=2&seed=11"
    first = open_dataset(spec, tmp_path / "a").split("train").image(5)

    def no_rendering(*args):
        raise AssertionError("rendered again")

    with monkeypatch.context() as patched:
        patched.setattr(embedded, "generate_split", no_rendering)
        again = open_dataset(spec, tmp_path / "b").split("train").image(5)
    assert np.array_equal(first, again)
    cached = _train_file(tmp_path / "b" / "cache" / "synthderm")
    assert np.array_equal(np.load(cached)[5], first)
    cached.write_bytes(b"not a numpy file")
    embedded._MEMORY.clear()
    assert np.array_equal(open_dataset(spec, tmp_path / "b").split("train").image(5), first)
    assert np.array_equal(np.load(cached)[5], first)  # rewritten
