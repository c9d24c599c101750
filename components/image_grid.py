"""A grid of images with captions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

__all__ = ["image_grid"]


def image_grid(images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 8, width: int = 112) -> None:
    """Show uint8 (H, W, 3) images row by row, `columns` per row, each `width` pixels wide."""
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, image, caption in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(image, caption=caption, width=width)
