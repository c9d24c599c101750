"""The artifacts bench natural draws: deterministic, their masks exactly the pixels they change, and those meant to
overlap the lesion overlapping it (by the lesion's own geometry)."""

import numpy as np
import pytest

from backend.bench.natural_artifacts import natural_artifacts, parse_artifacts
from backend.data.synthderm import SYNTHDERM_CLASSES, lesion_geometry, render_sample, sample_label
from backend.errors import ConfigError

_SAMPLES = [("train", i) for i in range(6)] + [("test", i) for i in range(6)]


def _sample(split: str, index: int):
    label = sample_label(5, split, index)
    return render_sample(5, split, index, label), lesion_geometry(5, split, index, label)


@pytest.fixture(scope="module")
def samples():
    return [_sample(split, i) for split, i in _SAMPLES]


def test_the_registry_holds_the_sticker_and_three_lesion_artifacts():
    artifacts = natural_artifacts()
    assert list(artifacts) == ["sticker", "ring", "hair", "bubbles"]
    assert [a.name for a in artifacts.values() if a.on_lesion] == ["ring", "hair", "bubbles"]
    assert parse_artifacts(" ring, sticker,ring ") == ("ring", "sticker")
    for text in ("", "ring,glitter"):
        with pytest.raises(ConfigError):
            parse_artifacts(text)


@pytest.mark.parametrize("name", list(natural_artifacts()))
def test_a_drawing_is_deterministic_and_changes_exactly_its_mask(name, samples):
    draw = natural_artifacts()[name].draw
    for n, (image, geometry) in enumerate(samples):
        before = image.copy()
        out, mask = draw(image, geometry, np.random.default_rng([n, 1]))
        again, mask_again = draw(image, geometry, np.random.default_rng([n, 1]))
        other, _ = draw(image, geometry, np.random.default_rng([n, 2]))
        assert np.array_equal(image, before)  # the input is left alone
        assert out.dtype == np.uint8 and out.shape == image.shape and mask.shape == image.shape[:2]
        assert np.array_equal(out, again) and np.array_equal(mask, mask_again)
        assert not np.array_equal(out, other)
        changed = (out != image).any(axis=2)
        assert not (changed & ~mask).any()  # nothing outside the mask
        assert changed[mask].mean() > 0.9  # and the mask is what changed
        assert 15 <= mask.sum() <= 0.3 * mask.size


@pytest.mark.parametrize("name", [n for n, a in natural_artifacts().items() if a.on_lesion])
def test_the_lesion_artifacts_lie_on_the_lesion_and_across_its_border(name, samples):
    draw = natural_artifacts()[name].draw
    for n, (image, geometry) in enumerate(samples):
        _, mask = draw(image, geometry, np.random.default_rng([n, 1]))
        inside = (mask & geometry.mask).sum()
        assert inside >= 0.15 * mask.sum(), name  # a good share of the artifact covers the lesion
        assert (mask & ~geometry.mask).any()  # and it crosses the border
        assert inside >= 0.03 * geometry.mask.sum()


def test_the_sticker_stays_off_the_lesion(samples):
    draw = natural_artifacts()["sticker"].draw
    shares = [(draw(image, None, np.random.default_rng(n))[1] & g.mask).mean() for n, (image, g) in enumerate(samples)]
    assert np.mean(shares) < 0.01


def test_the_lesion_geometry_matches_the_rendered_lesion():
    """The geometry's mask is the lesion render_sample draws (its colour not the skin's, mostly darker), its border
    lies where the mask ends, and its radius follows the class (melanomas are larger)."""
    radii, darker = {}, []
    for i in range(30):
        label = sample_label(5, "val", i)
        image, geometry = render_sample(5, "val", i, label).astype(float), lesion_geometry(5, "val", i, label)
        lesion, skin = image[geometry.mask].mean(axis=0), image[~geometry.mask].mean(axis=0)
        assert np.abs(lesion - skin).sum() > 10
        darker.append(lesion.sum() < skin.sum())
        area_radius = np.sqrt(geometry.mask.sum() / np.pi)
        assert abs(geometry.radius - area_radius) < 0.15 * area_radius
        cy, cx = geometry.centre
        for angle in geometry.angles[::15]:
            for reach, inside in ((0.8, True), (1.2, False)):
                r = reach * geometry.border_at(angle)
                y, x = int(cy + r * np.sin(angle)), int(cx + r * np.cos(angle))
                if 0 <= y < 64 and 0 <= x < 64:
                    assert geometry.mask[y, x] == inside
        radii.setdefault(SYNTHDERM_CLASSES[label], []).append(geometry.radius)
    assert np.mean(radii["melanoma"]) > np.mean(radii["nevus"]) and np.mean(darker) > 0.8
