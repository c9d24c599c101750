"""Pictures of heatmaps for the app and reports: a symmetric diverging colormap, RGBA overlays, side-by-side PNGs
and image grids. Pure numpy + PIL, no plotting state: every call stands alone."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from backend.errors import ConfigError

__all__ = ["heatmap_colors", "heatmap_rgba", "overlay", "side_by_side_png", "image_grid", "to_png"]

# Blue (negative) -> white (zero) -> red (positive), anchors at -1, -0.5, 0, 0.5, 1.
_ANCHORS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
_ROBUST_PERCENTILE = 99.5
_LUMINANCE = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B
_COLOURS = np.array([[0.02, 0.19, 0.58], [0.42, 0.62, 0.86], [1.0, 1.0, 1.0], [0.94, 0.54, 0.40], [0.60, 0.0, 0.05]])


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ConfigError(f"a heatmap must be (H, W), got shape {heatmap.shape}")
    return np.nan_to_num(heatmap)


def _symmetric(heatmap: np.ndarray) -> np.ndarray:
    """Scale to [-1, 1] by the largest absolute value, so zero relevance is always the colormap's centre."""
    peak = np.abs(heatmap).max()
    return heatmap / peak if peak > 0 else np.zeros_like(heatmap)


def heatmap_colors(heatmap: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a heatmap in the symmetric diverging colormap."""
    scaled = _symmetric(_check_heatmap(heatmap))
    rgb = np.stack([np.interp(scaled, _ANCHORS, _COLOURS[:, c]) for c in range(3)], axis=-1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def _robust_peak(heatmap: np.ndarray) -> float:
    """The 99.5th percentile of |relevance| (the maximum when that is zero): a few extreme pixels do not set the
    scale, so the broad relevance around them stays visible."""
    magnitude = np.abs(heatmap)
    peak = float(np.percentile(magnitude, _ROBUST_PERCENTILE))
    return peak if peak > 0 else float(magnitude.max())


def heatmap_rgba(heatmap: np.ndarray, max_alpha: float = 0.85) -> np.ndarray:
    """uint8 RGBA (H, W, 4): the colormap with opacity growing with |relevance| (transparent at zero), scaled by a
    robust peak and with a square-root ramp, so moderate relevance is seen, not only the few strongest pixels."""
    heatmap = _check_heatmap(heatmap)
    peak = _robust_peak(heatmap)
    scaled = np.clip(heatmap / peak, -1, 1) if peak > 0 else np.zeros_like(heatmap)
    alpha = np.sqrt(np.abs(scaled)) * max_alpha
    return np.concatenate([heatmap_colors(scaled), (alpha[..., None] * 255 + 0.5).astype(np.uint8)], axis=-1)


def overlay(image: np.ndarray, heatmap: np.ndarray, max_alpha: float = 0.85) -> np.ndarray:
    """uint8 RGB (H, W, 3): the heatmap's RGBA blended over the image in grey, so a red artifact cannot hide red
    relevance."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"overlay needs a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[:2] != np.shape(heatmap):
        raise ConfigError(f"image {image.shape[:2]} and heatmap {np.shape(heatmap)} differ in size")
    rgba = heatmap_rgba(heatmap, max_alpha).astype(np.float64) / 255
    grey = (image.astype(np.float64) / 255 @ _LUMINANCE)[..., None]
    out = grey * (1 - rgba[..., 3:]) + rgba[..., :3] * rgba[..., 3:]
    return (out * 255 + 0.5).astype(np.uint8)


def image_grid(images: Sequence[np.ndarray], columns: int = 8, pad: int = 2, background: int = 255) -> np.ndarray:
    """uint8 RGB grid of equally sized RGB images, `columns` per row, `pad` pixels apart."""
    if not images:
        raise ConfigError("no images to put in a grid")
    h, w = np.asarray(images[0]).shape[:2]
    if any(np.asarray(im).shape[:2] != (h, w) for im in images):
        raise ConfigError("grid images must all have the same size")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), background, dtype=np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = np.asarray(im)[..., :3]
    return grid


def to_png(image: np.ndarray, scale: int = 1, fast: bool = False) -> bytes:
    """PNG bytes of a uint8 RGB(A) image, enlarged `scale` times with nearest neighbours (pixels stay crisp).
    `fast` compresses less: a 224-px heatmap encodes in ~5 ms instead of ~20 ms for ~10% more bytes (a page's
    thumbnails, where 24 of them add up)."""
    picture = Image.fromarray(np.asarray(image))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1 if fast else 6)
    return buffer.getvalue()


def side_by_side_png(image: np.ndarray, heatmap: np.ndarray, scale: int = 4) -> bytes:
    """PNG of [image | heatmap | overlay], for reports and downloads."""
    panels = [np.asarray(image), heatmap_colors(heatmap), overlay(image, heatmap)]
    return to_png(image_grid(panels, columns=3), scale=scale)
