"""Thumbnails of samples: the input, its heatmap or the heatmap over it, enlarged with crisp pixels; and images as
data URLs for image columns in tables."""

from __future__ import annotations

import base64

import numpy as np

from backend.attribution import heatmap_colors, overlay, to_png

__all__ = ["data_url", "thumbnail_png"]


def thumbnail_png(image: np.ndarray, heatmap: np.ndarray | None = None, look: str = "input", width: int = 128) -> bytes:
    """PNG of `image` (uint8 H, W, 3) as `look`: "input", "heatmap" or "overlay" (the latter two need `heatmap`)."""
    if look == "heatmap" and heatmap is not None:
        image = heatmap_colors(heatmap)
    elif look == "overlay" and heatmap is not None:
        image = overlay(image, heatmap)
    return to_png(image, scale=max(1, width // image.shape[1]), fast=True)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
