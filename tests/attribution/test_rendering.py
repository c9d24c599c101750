"""Heatmap pictures: a symmetric diverging colormap, overlays, PNGs and grids, with no plotting state."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from backend.attribution import heatmap_colors, heatmap_rgba, image_grid, overlay, side_by_side_png, to_png
from backend.errors import ConfigError
from tests.conftest import ROOT


def test_colormap_is_symmetric_around_white():
    hm = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    rgb = heatmap_colors(hm).astype(int)
    assert rgb[0, 2].tolist() == [255, 255, 255]
    assert rgb[0, 4, 0] > rgb[0, 4, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]  # red for positive, blue for negative
    np.testing.assert_array_equal(heatmap_colors(-hm)[0, ::-1, 1], heatmap_colors(hm)[0, :, 1])
    np.testing.assert_array_equal(heatmap_colors(hm * 7), heatmap_colors(hm))  # scale-free
    assert heatmap_colors(np.zeros((3, 3))).min() == 255


def test_rgba_overlay_png_and_grid():
    image = np.full((8, 8, 3), 100, np.uint8)
    hm = np.zeros((8, 8))
    hm[2, 2] = 1.0
    rgba = heatmap_rgba(hm)
    assert rgba.shape == (8, 8, 4) and rgba[0, 0, 3] == 0 and rgba[2, 2, 3] > 200
    blended = overlay(image, hm)
    assert (blended[0, 0] == 100).all() and blended[2, 2, 0] < 200 and blended[2, 2, 0] != 100
    png = Image.open(io.BytesIO(side_by_side_png(image, hm, scale=3)))
    assert png.size == ((8 * 3 + 4) * 3, 8 * 3)
    grid = image_grid([image] * 5, columns=2, pad=1)
    assert grid.shape == (3 * 8 + 2, 2 * 8 + 1, 3)
    assert Image.open(io.BytesIO(to_png(grid))).size == (17, 26)


def test_overlays_show_broad_relevance_and_red_artifacts_cannot_hide_it():
    rng = np.random.default_rng(0)
    hm = np.abs(rng.normal(0, 1, (64, 64))) * 0.1
    hm[20:40, 20:40] += 1.0  # a region of moderate relevance
    hm[5, 5] = 50.0  # and one extreme pixel, as LRP maps often have
    alpha = heatmap_rgba(hm)[..., 3] / 255
    assert (alpha >= 0.2 * 0.85).mean() >= 0.10  # the region is visible, not only the extreme pixel
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220  # a red artifact everywhere
    blended = overlay(red, np.zeros((64, 64))).astype(int)
    assert (blended[..., 0] == blended[..., 1]).all() and (blended[..., 1] == blended[..., 2]).all()
    hot = overlay(red, hm).astype(int)
    assert (hot[30, 30, 0] - hot[30, 30, 2]) > 60  # relevance is red over the grey image


def test_bad_input():
    with pytest.raises(ConfigError, match=r"\(H, W\)"):
        heatmap_colors(np.zeros((2, 3, 3)))
    with pytest.raises(ConfigError, match="differ in size"):
        overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5)))
    with pytest.raises(ConfigError, match="uint8 RGB"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="same size"):
        image_grid([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)])


def test_no_plotting_library_is_involved():
    code = (
        "import sys, numpy as np; from backend.attribution import side_by_side_png; "
        "side_by_side_png(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4))); print('matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
