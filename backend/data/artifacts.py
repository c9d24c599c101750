"""Artifact library: functions image -> (image, mask) that plant a shortcut and say exactly where it is.

Each artifact takes a uint8 RGB image (H, W, 3) and a numpy Generator and returns the changed image and a boolean
mask (H, W) that covers every changed pixel (full image for non-local artifacts). Artifacts are drawn as alpha
layers composited over the image, so the mask is the layer's support. Sizes are relative to the image, so the same
artifact works at 64 px on SynthDerm and at 224 px on real ISIC images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from backend.errors import ConfigError

__all__ = ["ArtifactInfo", "register_artifact", "artifact_names", "get_artifact", "apply_artifact"]

ArtifactFn = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ArtifactInfo:
    """A registered artifact: its function, whether it is spatially local, and a one-line description."""

    name: str
    fn: ArtifactFn
    local: bool
    description: str


_ARTIFACTS: dict[str, ArtifactInfo] = {}


def register_artifact(name: str, *, local: bool, description: str) -> Callable[[ArtifactFn], ArtifactFn]:
    """Declare an artifact and its metadata in one place."""

    def decorate(fn: ArtifactFn) -> ArtifactFn:
        if name in _ARTIFACTS:
            raise ValueError(f"artifact {name!r} is registered twice")
        _ARTIFACTS[name] = ArtifactInfo(name, fn, local, description)
        return fn

    return decorate


def artifact_names() -> tuple[str, ...]:
    return tuple(_ARTIFACTS)


def get_artifact(name: str) -> ArtifactInfo:
    try:
        return _ARTIFACTS[name]
    except KeyError:
        raise ConfigError(f"unknown artifact {name!r}; known: {', '.join(_ARTIFACTS)}") from None


def apply_artifact(name: str, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Plant artifact `name` into a uint8 (H, W, 3) image; returns (new image, bool mask of the artifact)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"artifacts need a uint8 RGB image of shape (H, W, 3), got {image.dtype} {image.shape}")
    out, mask = get_artifact(name).fn(image, rng)
    return out, mask


# ---------------------------------------------------------------------------------------------------------------
# Drawing primitives on normalised coordinates: y, x in [-1, 1] over the image.


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y = (np.arange(h) + 0.5) / h * 2 - 1
    x = (np.arange(w) + 0.5) / w * 2 - 1
    return np.meshgrid(y, x, indexing="ij")


def _composite(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend `colour` (3,) or (H, W, 3) in [0, 1] over `image` with `alpha` (H, W); mask = alpha's support."""
    alpha = np.where(alpha < 0.04, 0.0, np.clip(alpha, 0, 1))
    base = image.astype(np.float64) / 255
    out = base * (1 - alpha[..., None]) + np.asarray(colour) * alpha[..., None]
    out = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    mask = alpha > 0
    out[~mask] = image[~mask]
    return out, mask


def _soft(signed_distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (negative inside), with a one-pixel ramp."""
    return np.clip(0.5 - signed_distance / pixel, 0, 1)


def _polyline_distance(yy: np.ndarray, xx: np.ndarray, points: np.ndarray, reach: float) -> np.ndarray:
    """Distance from each pixel to a densely sampled curve `points` (N, 2) given as (y, x); exact within `reach`
    of the curve's bounding box, +inf beyond it (which is all a stroke needs, and keeps large images fast)."""
    dist = np.full(yy.shape, np.inf)
    (y0, x0), (y1, x1) = points.min(axis=0) - reach, points.max(axis=0) + reach
    rows = np.flatnonzero((yy[:, 0] >= y0) & (yy[:, 0] <= y1))
    cols = np.flatnonzero((xx[0] >= x0) & (xx[0] <= x1))
    if rows.size == 0 or cols.size == 0:
        return dist
    sub_y, sub_x = yy[np.ix_(rows, cols)], xx[np.ix_(rows, cols)]
    d2 = (sub_y[None] - points[:, 0, None, None]) ** 2 + (sub_x[None] - points[:, 1, None, None]) ** 2
    dist[np.ix_(rows, cols)] = np.sqrt(d2.min(axis=0))
    return dist


def _rotated(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along `angle`, v across) relative to the centre (cy, cx)."""
    dy, dx = yy - cy, xx - cx
    return np.cos(angle) * dx + np.sin(angle) * dy, -np.sin(angle) * dx + np.cos(angle) * dy


@lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def _text_alpha(h: int, w: int, text: str, xy: tuple[int, int], px: int) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).text(xy, text, fill=255, font=_font(px))
    return np.asarray(canvas, dtype=np.float64) / 255


# ---------------------------------------------------------------------------------------------------------------
# Realistic ISIC artifacts.


@register_artifact("skin_marker", local=True, description="purple or blue surgical-ink strokes near the lesion")
def skin_marker(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    yy, xx = _grid(h, w)
    pixel = 2 / min(h, w)
    ink = np.array([0.42, 0.20, 0.58]) if rng.random() < 0.6 else np.array([0.18, 0.24, 0.62])
    alpha = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 3))):
        radius = rng.uniform(0.62, 0.82)
        start = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.5, 1.0)  # radians of arc
        t = np.linspace(start, start + length, max(h, w))
        wobble = 1 + 0.05 * np.sin(t * rng.uniform(3, 6))
        points = np.stack([radius * wobble * np.sin(t), radius * wobble * np.cos(t)], axis=1)
        half_width = max(rng.uniform(0.04, 0.06), 1.3 * pixel)
        dist = _polyline_distance(yy, xx, points, reach=half_width + 2 * pixel)
        stroke = _soft(dist - half_width, pixel) * rng.uniform(0.8, 0.95)
        alpha = np.maximum(alpha, stroke)
    return _composite(image, ink + rng.normal(0, 0.03, 3), alpha)


@register_artifact("band_aid", local=True, description="a beige adhesive bandage with a perforated pad")
def band_aid(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    yy, xx = _grid(h, w)
    pixel = 2 / min(h, w)
    where = rng.uniform(0, 2 * np.pi)
    cy, cx = 0.72 * np.sin(where), 0.72 * np.cos(where)
    u, v = _rotated(yy, xx, cy, cx, where + np.pi / 2 + rng.normal(0, 0.3))
    half_len, half_wid, corner = rng.uniform(0.45, 0.6), rng.uniform(0.14, 0.2), 0.1
    qu, qv = np.abs(u) - (half_len - corner), np.abs(v) - (half_wid - corner)
    box = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0) - corner
    alpha = _soft(box, pixel) * 0.97
    tone = np.array([0.86, 0.72, 0.57]) + rng.normal(0, 0.02, 3)
    colour = np.broadcast_to(tone, (h, w, 3)).copy()
    pad = (np.abs(u) < half_len * 0.4) & (np.abs(v) < half_wid * 0.8)
    colour[pad] = tone * 1.08
    holes = pad & (np.sin(u / pixel * np.pi / 2.5) > 0.7) & (np.sin(v / pixel * np.pi / 2.5) > 0.7)
    colour[holes] = tone * 0.8
    return _composite(image, np.clip(colour, 0, 1), alpha)


@register_artifact("ruler", local=True, description="a measuring ruler with tick marks along one edge")
def ruler(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    yy, xx = _grid(h, w)
    pixel = 2 / min(h, w)
    side = int(rng.integers(0, 4)) * np.pi / 2
    # u runs along the ruler, v across it; the ruler lies near the image border on the chosen side.
    u, v = _rotated(yy, xx, 0.0, 0.0, side + np.pi / 2 + rng.normal(0, 0.08))
    inner = rng.uniform(0.72, 0.82)
    width = rng.uniform(0.16, 0.22)
    across = v - inner  # 0 at the ruler's inner edge, growing outwards
    body = _soft(np.maximum(-across, across - width), pixel)
    spacing = max(3.0, rng.uniform(0.08, 0.11) / pixel) * pixel
    phase = np.mod(u / spacing, 5.0)
    tick_len = np.where(np.floor(phase) == 0, 0.75, 0.4) * width
    ticks = (np.mod(u / spacing, 1.0) < 0.35) & (across > 0) & (across < tick_len)
    white = rng.random() < 0.7
    colour = np.broadcast_to(np.array([0.93, 0.92, 0.86]) if white else np.array([0.95, 0.83, 0.35]), (h, w, 3))
    colour = np.where(ticks[..., None], 0.1, colour)
    return _composite(image, colour, body * 0.95)


@register_artifact("dark_corner", local=True, description="the dark circular rim of a dermoscope's field of view")
def dark_corner(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    yy, xx = _grid(h, w)
    pixel = 2 / min(h, w)
    cy, cx = rng.normal(0, 0.06, 2)
    radius = rng.uniform(1.02, 1.18)
    rim = _soft(radius - np.hypot(yy - cy, xx - cx), 3 * pixel)
    return _composite(image, np.array([0.03, 0.03, 0.03]), rim * 0.97)


# ---------------------------------------------------------------------------------------------------------------
# Controlled artifacts of the seed paper.

_LSB_TRIGGER = "CLARC"


@register_artifact("lsb", local=False, description="an invisible text trigger written into the least significant bits")
def lsb(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    px = max(8, min(h, w) // 6)
    bits = np.zeros((h, w))
    for row in range(0, h, px + 2):
        offset = -((row // (px + 2)) * px) % (px * 3)
        bits = np.maximum(bits, _text_alpha(h, w, (_LSB_TRIGGER + " ") * (w // px + 1), (-offset, row), px))
    bit = (bits > 0.5).astype(np.uint8)
    out = (image & np.uint8(0xFE)) | bit[..., None]
    return out, np.ones((h, w), dtype=bool)


@register_artifact("timestamp", local=True, description="a rendered camera timestamp in one corner")
def timestamp(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    px = max(8, min(h, w) // 6)
    text = f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
    text_w = int(_font(px).getlength(text))
    margin = max(1, min(h, w) // 32)
    left = bool(rng.random() < 0.5)
    top = bool(rng.random() < 0.5)
    x = margin if left else w - text_w - margin
    y = margin if top else h - px - 2 * margin
    alpha = _text_alpha(h, w, text, (x, y), px)
    colour = np.array([1.0, 0.85, 0.2]) if rng.random() < 0.5 else np.array([0.98, 0.98, 0.98])
    return _composite(image, colour, np.clip(alpha * 1.2, 0, 1))


@register_artifact("brightness", local=False, description="the whole image blended towards white")
def brightness(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = image.shape
    out, _ = _composite(image, np.ones(3), np.full((h, w), rng.uniform(0.25, 0.35)))
    return out, np.ones((h, w), dtype=bool)
