"""The artifacts `bench natural` draws into its image folders, none of them one of `data.artifacts`: a colour
calibration sticker near the image border, and three that overlap the lesion, where cutting an artifact out of one
image and pasting it into another no longer gives what a camera would: a surgical-marker ink line drawn along the
lesion's border, a tuft of dark hairs across the border, and gel bubbles sitting on the lesion.

Each is drawn 4x supersampled on a transparent layer, deterministic in its generator, and returns the image and the
mask of the pixels it changed (none outside the mask).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from backend.data.synthderm import LesionGeometry
from backend.errors import ConfigError

__all__ = ["NaturalArtifact", "draw_sticker", "natural_artifact", "natural_artifacts", "parse_artifacts"]

_SCALE = 4  # supersampling of every drawing
_VISIBLE = 0.05  # coverage below which a pixel is left as it was (and out of the mask)

Drawing = Callable[[np.ndarray, LesionGeometry | None, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class NaturalArtifact:
    """An artifact of the bench: its name, what it looks like, whether it is drawn on the lesion (then its drawing
    needs the lesion's geometry) and the drawing: (image uint8 (H, W, 3), geometry, rng) -> (image, mask (H, W))."""

    name: str
    description: str
    on_lesion: bool
    draw: Drawing


_ARTIFACTS: dict[str, NaturalArtifact] = {}


def natural_artifact(name: str, description: str, *, on_lesion: bool):
    """Declare the decorated drawing as the bench artifact `name`."""

    def decorate(draw: Drawing) -> Drawing:
        _ARTIFACTS[name] = NaturalArtifact(name, description, on_lesion, draw)
        return draw

    return decorate


def natural_artifacts() -> dict[str, NaturalArtifact]:
    """Every bench artifact by name, in the order declared."""
    return dict(_ARTIFACTS)


def parse_artifacts(text: str) -> tuple[str, ...]:
    """The artifact names of a comma-separated list, each known and given once."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in _ARTIFACTS]
    if unknown or not names:
        raise ConfigError(f"artifacts {text!r}: give one or more of {', '.join(_ARTIFACTS)}, comma-separated")
    return names


def _canvas(image: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A transparent layer the size of `image`, supersampled, and its pen."""
    h, w, _ = image.shape
    canvas = Image.new("RGBA", (w * _SCALE, h * _SCALE), (0, 0, 0, 0))
    return canvas, ImageDraw.Draw(canvas)


def _composite(image: np.ndarray, canvas: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """`canvas` scaled down onto `image`; the pixels it covers visibly (> 5%) form the mask, the others stay as they
    were."""
    h, w, _ = image.shape
    layer = np.asarray(canvas.resize((w, h), Image.LANCZOS), dtype=np.float64) / 255
    alpha = np.clip(layer[..., 3:], 0, 1)
    mask = alpha[..., 0] > _VISIBLE
    alpha = alpha * mask[..., None]
    out = image.astype(np.float64) / 255 * (1 - alpha) + layer[..., :3] * alpha
    return np.where(mask[..., None], (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), image), mask


def _stroke(draw: ImageDraw.ImageDraw, points: np.ndarray, widths: np.ndarray, colours: np.ndarray) -> None:
    """A brush stroke through `points` (N, 2) as (y, x) image pixels: a dab per point, of diameter `widths` (N,)
    pixels and RGBA `colours` (N, 4) in [0, 255], on the supersampled layer."""
    for (y, x), width, colour in zip(points * _SCALE, widths * _SCALE / 2, colours.round().astype(int)):
        draw.ellipse([x - width, y - width, x + width, y + width], fill=tuple(colour))


def _disc(draw: ImageDraw.ImageDraw, y: float, x: float, radius: float, fill: tuple) -> None:
    """A filled disc at image pixel (y, x) of `radius` pixels, RGBA `fill`, on the supersampled layer (replacing what
    is under it there)."""
    draw.ellipse(
        [(x - radius) * _SCALE, (y - radius) * _SCALE, (x + radius) * _SCALE, (y + radius) * _SCALE], fill=fill
    )


def _polyline(points: np.ndarray, spacing: float = 0.15) -> np.ndarray:
    """`points` (N, 2) resampled every `spacing` pixels along the line, so a stroke's dabs overlap."""
    lengths = np.r_[0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    at = np.linspace(0, lengths[-1], max(2, int(lengths[-1] / spacing)))
    return np.stack([np.interp(at, lengths, points[:, 0]), np.interp(at, lengths, points[:, 1])], axis=1)


@natural_artifact("sticker", "a round colour-calibration sticker near the image border", on_lesion=False)
def draw_sticker(
    image: np.ndarray, geometry: LesionGeometry | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A round colour-calibration sticker (a white rim, a teal or orange disc, a dark cross) near the image border;
    returns the image and the mask of the sticker."""
    canvas, draw = _canvas(image)
    size = canvas.height
    radius = rng.uniform(0.10, 0.14) * size
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = size / 2 + np.cos(angle) * size * 0.34, size / 2 + np.sin(angle) * size * 0.34
    disc = (40, 150, 140) if rng.random() < 0.7 else (225, 120, 40)
    inner, bar = radius * 0.78, radius * 0.12
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(245, 245, 240, 255))
    draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=(*disc, 255))
    draw.rectangle([cx - inner * 0.7, cy - bar, cx + inner * 0.7, cy + bar], fill=(20, 30, 30, 255))
    draw.rectangle([cx - bar, cy - inner * 0.7, cx + bar, cy + inner * 0.7], fill=(20, 30, 30, 255))
    return _composite(image, canvas)


def _smooth_border(geometry: LesionGeometry, harmonics: int = 4) -> np.ndarray:
    """The border's distance per direction of `geometry.angles` without its fine wiggles (the first `harmonics`
    harmonics): the outline a hand follows."""
    spectrum = np.fft.rfft(geometry.border)
    spectrum[harmonics + 1 :] = 0
    return np.fft.irfft(spectrum, len(geometry.border))


@natural_artifact(
    "ring", "a surgical-marker ink line (violet or blue) drawn by hand along the lesion's border", on_lesion=True
)
def draw_ring(image: np.ndarray, geometry: LesionGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ink line along the lesion's smoothed border (on it, a little inside or outside), most of the way round or
    all of it, wobbling and of uneven pressure; returns the image and the mask of the ink."""
    canvas, draw = _canvas(image)
    start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.65, 1.08) * 2 * np.pi
    theta = start + np.linspace(0, span, 240)
    reach = rng.uniform(0.86, 1.04) + 0.05 * np.sin(theta * rng.integers(1, 3) + rng.uniform(0, 2 * np.pi))
    smooth = np.interp(np.mod(theta, 2 * np.pi), geometry.angles, _smooth_border(geometry), period=2 * np.pi)
    wobble = np.cumsum(rng.normal(0, 0.08, theta.size))
    radius = smooth * reach + wobble - wobble.mean()
    cy, cx = geometry.centre
    points = _polyline(np.stack([cy + radius * np.sin(theta), cx + radius * np.cos(theta)], axis=1))
    n = len(points)
    ink = np.array([95, 45, 135]) if rng.random() < 0.7 else np.array([40, 60, 140])
    ink = np.clip(ink + rng.normal(0, 10, 3), 0, 255)
    pressure = 0.75 + 0.15 * np.sin(np.linspace(0, rng.uniform(2, 6), n) + rng.uniform(0, 2 * np.pi))
    widths = rng.uniform(1.3, 1.9) * (0.85 + 0.15 * pressure)
    _stroke(draw, points, widths, np.column_stack([np.tile(ink, (n, 1)), 255 * pressure]))
    return _composite(image, canvas)


@natural_artifact("hair", "a tuft of dark, thick hairs crossing the lesion's border", on_lesion=True)
def draw_hair(image: np.ndarray, geometry: LesionGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three to six dark, curved hairs growing from one side of the lesion, each crossing its border (more or less
    radially), tapering to their tips; returns the image and the mask of the hairs."""
    canvas, draw = _canvas(image)
    cy, cx = geometry.centre
    near = rng.uniform(0, 2 * np.pi)  # the tuft grows from one side of the lesion
    colour = np.clip(np.array([30, 20, 16]) * rng.uniform(0.6, 1.4) + rng.normal(0, 4, 3), 0, 255)
    for _ in range(int(rng.integers(3, 7))):
        angle = near + rng.normal(0, 0.7)
        border = float(geometry.border_at(angle))
        cross = np.array([cy + border * np.sin(angle), cx + border * np.cos(angle)])
        heading = angle + rng.uniform(-1.0, 1.0)  # across the border, more or less radially
        direction = np.array([np.sin(heading), np.cos(heading)])
        length = rng.uniform(18, 34)
        ends = cross + np.outer(np.array([-1, 1]) * length / 2 + rng.uniform(-0.3, 0.3) * length, direction)
        bend = (ends.mean(axis=0) + rng.uniform(-0.25, 0.25) * length * np.array([-direction[1], direction[0]]))[None]
        t = np.linspace(0, 1, 60)[:, None]
        curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * bend + t**2 * ends[1]  # a quadratic Bezier
        points = _polyline(curve)
        along = np.linspace(0, 1, len(points))
        widths = rng.uniform(1.0, 1.5) * np.clip(1.15 - np.abs(2 * along - 1) ** 3, 0.25, 1)
        alpha = 255 * rng.uniform(0.85, 0.97)
        _stroke(draw, points, widths, np.column_stack([np.tile(colour, (len(points), 1)), np.full(len(points), alpha)]))
    return _composite(image, canvas)


@natural_artifact(
    "bubbles", "gel bubbles on the lesion: bright rims, a faint haze, a specular highlight", on_lesion=True
)
def draw_bubbles(
    image: np.ndarray, geometry: LesionGeometry, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Three to six immersion-gel bubbles of 2.5 to 6 pixels radius on the lesion (some across its border), each a
    dark refraction edge, a bright inner rim, a hazy inside and a highlight towards one light; returns the image and
    the mask of the bubbles."""
    canvas, draw = _canvas(image)
    cy, cx = geometry.centre
    light = rng.uniform(0, 2 * np.pi)
    lit = np.array([-np.sin(light), -np.cos(light)])  # highlights sit towards the light, (y, x)
    for _ in range(int(rng.integers(3, 7))):
        angle = rng.uniform(0, 2 * np.pi)
        reach = float(geometry.border_at(angle)) * np.sqrt(rng.uniform(0.05, 1.2))
        y, x = cy + reach * np.sin(angle), cx + reach * np.cos(angle)
        r = rng.uniform(2.5, 6.0)
        rim = max(0.6, r * 0.16)

        _disc(draw, y, x, r, (70, 60, 60, 150))  # the refraction edge
        _disc(draw, y, x, r - rim * 0.5, (250, 250, 248, 190))  # the bright rim
        _disc(draw, y, x, r - rim * 1.5, (235, 238, 240, 55))  # the hazy inside
        hy, hx = np.array([y, x]) + lit * r * 0.45
        _disc(draw, hy, hx, r * rng.uniform(0.2, 0.3), (255, 255, 255, 240))  # the highlight
    return _composite(image, canvas)
