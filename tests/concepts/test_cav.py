"""CAV fitting: pattern CAVs follow the signal, filter CAVs diverge under a distractor; every CAV is unit norm and
oriented; bad input is refused with a clear message; CAVs save and load."""

import numpy as np
import pytest

from backend.concepts import Cav, CavConfig, cav_kinds, fit_cav, load_cav
from backend.errors import ConfigError

KINDS = tuple(cav_kinds())


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _signal_with_distractor(n=2000, seed=0):
    """x = y * a + s * d + noise, with a strong distractor d that shares a component with the signal a."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    a = np.zeros(10)
    a[0] = 1.0
    d = np.zeros(10)
    d[:2] = 1 / np.sqrt(2)
    x = y[:, None] * a + rng.normal(0, 3, (n, 1)) * d + rng.normal(0, 0.3, (n, 10))
    return x, y, a


def test_pattern_is_the_normalised_difference_of_class_means_and_the_covariance_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 7))
    y = np.array([1] * 20 + [0] * 40)
    cav = fit_cav(x, y)
    diff = x[y == 1].mean(0) - x[y == 0].mean(0)
    np.testing.assert_allclose(cav.vector, diff / np.linalg.norm(diff), atol=1e-12)
    # Slow reference: cov(a_c, t) / var(t) channel by channel.
    t = y.astype(float)
    ref = np.array([sum((x[i, c] - x[:, c].mean()) * (t[i] - t.mean()) for i in range(60)) for c in range(7)])
    ref /= sum((ti - t.mean()) ** 2 for ti in t)
    np.testing.assert_allclose(cav.vector, ref / np.linalg.norm(ref), atol=1e-12)


def test_pattern_recovers_the_signal_and_svm_diverges():
    x, y, a = _signal_with_distractor()
    pattern = fit_cav(x, y, CavConfig(kind="pattern"))
    svm = fit_cav(x, y, CavConfig(kind="svm"))
    assert _cos(pattern.vector, a) > 0.95
    assert _cos(svm.vector, a) < _cos(pattern.vector, a) - 0.15
    assert svm.params["C"] > 0 and 0.5 < svm.params["cv_auc"] <= 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sign", [1, -1])
def test_every_kind_is_unit_norm_and_oriented_towards_the_concept(kind, sign):
    rng = np.random.default_rng(2)
    y = np.array([0, 1] * 60)
    x = rng.normal(size=(120, 6)) + sign * 2.0 * y[:, None] * np.array([1, 0.5, 0, 0, 0, 0])
    cav = fit_cav(
        x, y, CavConfig(kind=kind), layer="features.20", pooling="max", sample_ids=[str(i) for i in range(120)]
    )
    assert np.linalg.norm(cav.vector) == pytest.approx(1.0)
    scores = cav.scores(x)
    assert scores[y == 1].mean() > scores[y == 0].mean()
    assert (cav.kind, cav.layer, cav.pooling, cav.n_concept, cav.n_other) == (kind, "features.20", "max", 60, 60)
    assert len(cav.sample_ids) == 120 and cav.fit_seconds >= 0


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((5, 3)), np.array([1, 0, 0, 0, 0]), "at least 2 samples with the concept and 2 without; got 1 with"),
        (np.zeros((5, 3)), np.array([1, 1, 1, 1, 0]), "got 4 with and 1 without"),
        (np.zeros((4, 3)), np.array([0, 0, 0, 0]), "got 0 with"),
        (np.zeros((4, 2, 2, 2)), np.array([0, 1, 0, 1]), "pooled activations of shape"),
        (np.zeros((4, 3)), np.array([0, 1, 2, 1]), "must be 0"),
        (np.zeros((4, 3)), np.array([0, 1, 1]), "one concept label per sample"),
    ],
)
def test_bad_input_is_refused(x, y, message):
    with pytest.raises(ConfigError, match=message):
        fit_cav(x, y)


def test_nan_activations_are_named():
    x = np.ones((6, 3))
    x[4, 1] = np.nan
    with pytest.raises(ConfigError, match=r"NaN or infinite values in 1 samples \(first: \[4\]\)"):
        fit_cav(x, np.array([0, 1, 0, 1, 0, 1]))


def test_unknown_kind_and_bad_config():
    with pytest.raises(ConfigError, match="unknown CAV kind 'tree'"):
        CavConfig(kind="tree")
    with pytest.raises(ConfigError, match="cv_folds"):
        CavConfig(cv_folds=1)


def test_save_and_load_round_trip(tmp_path):
    x, y, _ = _signal_with_distractor(200)
    cav = fit_cav(
        x,
        y,
        CavConfig(kind="ridge"),
        layer="features.20",
        pooling="max",
        concept="skin marker",
        sample_ids=[f"s{i}" for i in range(200)],
    )
    path = cav.save(tmp_path / "cavs" / "skin_marker")
    loaded = load_cav(path)
    assert isinstance(loaded, Cav)
    np.testing.assert_array_equal(loaded.vector, cav.vector)
    assert (loaded.kind, loaded.concept, loaded.sample_ids, loaded.params) == (
        cav.kind,
        cav.concept,
        cav.sample_ids,
        cav.params,
    )
    path.write_text('{"vector": "junk')
    with pytest.raises(ConfigError, match="cannot read the CAV"):
        load_cav(path)
    with pytest.raises(ConfigError, match="do not fit a CAV"):
        cav.scores(np.zeros((3, 4)))
