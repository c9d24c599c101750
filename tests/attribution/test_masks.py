"""Artifact masks from heatmaps, and IoU, pointing game and R_bias against slow references."""

import json

import numpy as np
import pytest

from backend.attribution import MaskConfig, heatmap_masks, iou, pointing_game, r_bias, tune_mask_config
from backend.errors import ConfigError
from tests.conftest import run_backend


def _maps():
    """A strong stroke, a weak blob elsewhere, and a weak tail touching the stroke."""
    hm = np.zeros((32, 32))
    hm[5, 4:20] = 1.0  # the artifact
    hm[6, 4:20] = 0.6
    hm[5:7, 20:24] = 0.2  # weak but connected to it
    hm[25:28, 25:28] = 0.25  # weak and apart (e.g. the lesion)
    hm[15, 15] = -3.0  # negative relevance never makes a mask
    return hm


def test_hysteresis_keeps_what_connects_to_a_strong_peak():
    mask = heatmap_masks(_maps(), MaskConfig(sigma=0.0, low=0.15, high=0.5))[0]
    assert mask[5, 4:20].all() and mask[5:7, 20:24].all()
    assert not mask[25:28, 25:28].any() and not mask[15, 15]
    single = heatmap_masks(_maps(), MaskConfig(sigma=0.0, low=0.15, high=0.15))[0]  # plain threshold
    assert single[25:28, 25:28].all()
    assert not heatmap_masks(np.zeros((2, 8, 8))).any()


def test_mask_config_is_validated_and_tuning_finds_the_truth():
    with pytest.raises(ConfigError, match="low <= high"):
        MaskConfig(low=0.5, high=0.2)
    with pytest.raises(ConfigError, match="sigma"):
        MaskConfig(sigma=-1)
    truth = np.zeros((1, 32, 32), bool)
    truth[0, 5:7, 4:24] = True
    config, score = tune_mask_config(_maps()[None], truth, sigmas=(0.0, 1.0), lows=(0.1, 0.15, 0.3), highs=(0.5,))
    assert score > 0.9 and config.sigma == 0.0


def _slow_iou(a, b):
    inter = sum(1 for x, y in zip(a.ravel(), b.ravel()) if x and y)
    union = sum(1 for x, y in zip(a.ravel(), b.ravel()) if x or y)
    return inter / union if union else 1.0


def test_iou_pointing_and_r_bias_match_slow_references():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 10, 10)) > 0.6, rng.random((4, 10, 10)) > 0.5
    np.testing.assert_allclose(iou(a, b), [_slow_iou(x, y) for x, y in zip(a, b)])
    assert iou(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool))[0] == 1.0
    rel = rng.normal(size=(4, 10, 10))
    expected = [sum(abs(r) for r, m in zip(rr.ravel(), mm.ravel()) if m) / np.abs(rr).sum() for rr, mm in zip(rel, b)]
    np.testing.assert_allclose(r_bias(rel, b), expected)
    assert r_bias(np.zeros((1, 3, 3)), np.ones((1, 3, 3), bool))[0] == 0.0
    hm = np.zeros((2, 5, 5))
    hm[0, 1, 1] = 5
    hm[1, 4, 4] = 5
    truth = np.zeros((2, 5, 5), bool)
    truth[:, 1, 1] = True
    assert pointing_game(hm, truth).tolist() == [True, False]
    with pytest.raises(ConfigError, match="differ"):
        iou(a, b[:, :5])


def test_bench_attribution_shows_the_shortcut_and_finds_the_artifact(tmp_path):
    out = tmp_path / "attribution.json"
    done = run_backend("bench", "attribution", "--quick", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    rb, masks, latency = figures["r_bias"], figures["concept_masks"], figures["latency"]
    assert rb["n"] > 100 and rb["attacked_mean"] > 5 * rb["clean_mean"]
    assert masks["test_iou"] >= 0.5 and masks["pointing_game"] >= 0.7
    assert latency["single_median_ms"] <= 150 and latency["batch_speedup_per_image"] >= 3
    assert "R_bias" in done.stdout
