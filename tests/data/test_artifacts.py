"""The artifact library: every artifact changes the image, and its mask covers every changed pixel."""

import numpy as np
import pytest

from backend.data import apply_artifact, artifact_names, get_artifact, render_sample
from backend.errors import ConfigError

ALL = artifact_names()


def test_registry_holds_the_realistic_and_the_controlled_artifacts():
    assert set(ALL) == {"skin_marker", "band_aid", "ruler", "dark_corner", "lsb", "timestamp", "brightness"}
    assert not get_artifact("lsb").local and not get_artifact("brightness").local
    assert all(get_artifact(a).local for a in ("skin_marker", "band_aid", "ruler", "dark_corner", "timestamp"))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(64, 64), (224, 224), (96, 160)])
def test_mask_covers_every_changed_pixel(name, shape):
    for seed in range(5):
        base = render_sample(seed, "test", seed, seed % 3, 64)
        image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(base).resize((shape[1], shape[0])))
        out, mask = apply_artifact(name, image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert mask.shape == shape and mask.dtype == bool
        changed = (out != image).any(axis=-1)
        assert changed.any(), f"{name} changed nothing"
        assert not (changed & ~mask).any(), f"{name} changed pixels outside its mask"
        if get_artifact(name).local:
            assert 0.005 < mask.mean() < 0.5, f"{name} mask covers {mask.mean():.1%} of the image"
            assert changed.sum() >= 0.5 * mask.sum(), f"{name} mask is much larger than the change"
        else:
            assert mask.all()


@pytest.mark.parametrize("name", ALL)
def test_same_generator_same_artifact(name):
    image = render_sample(0, "test", 1, 1)
    a, ma = apply_artifact(name, image, np.random.default_rng(5))
    b, mb = apply_artifact(name, image, np.random.default_rng(5))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_lsb_trigger_is_invisible_but_present():
    image = render_sample(0, "test", 2, 0)
    out, _ = apply_artifact("lsb", image, np.random.default_rng(0))
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1
    bits = out[..., 0] & 1
    assert 0.05 < bits.mean() < 0.6  # the text pattern, not all ones or zeros


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="unknown artifact 'sticker'"):
        apply_artifact("sticker", np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="uint8 RGB"):
        apply_artifact("ruler", np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="uint8 RGB"):
        apply_artifact("ruler", np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))
