"""SynthDerm: procedural dermoscopy images whose class evidence lies in the lesion itself.

Classes follow the dermoscopic ABCD rule and pattern analysis:
- nevus: small, symmetric, regular border, one or two browns, a faint regular network;
- melanoma: larger, asymmetric, irregular and partly abrupt border, several colours (dark brown, black,
  blue-grey veil, red, white regression), irregular peripheral dots and globules;
- seborrheic keratosis: sharply demarcated, waxy tan, cerebriform ridges, milia-like cysts and comedo-like openings.
Nuisance variation (skin tone, lighting gradient, skin texture, hair, dermoscope vignette) and a share of atypical
lesions whose features drift towards another class keep the task from being trivial.

Every image is a pure function of (seed, split, index): one sample never changes when a split grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "SYNTHDERM_CLASSES",
    "SYNTHDERM_VERSION",
    "LesionGeometry",
    "LesionParams",
    "lesion_geometry",
    "sample_label",
    "sample_params",
    "render_sample",
]

SYNTHDERM_CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
# Bump when rendering changes: it keys the on-disk image cache.
SYNTHDERM_VERSION = 1

_CLASS_SHARES = (0.4, 0.35, 0.25)
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Pigment palette, RGB in [0, 1].
_LIGHT_BROWN = np.array([0.62, 0.42, 0.29])
_BROWN = np.array([0.45, 0.28, 0.18])
_DARK_BROWN = np.array([0.27, 0.16, 0.10])
_BLACK = np.array([0.09, 0.07, 0.07])
_BLUE_GREY = np.array([0.38, 0.44, 0.55])
_RED = np.array([0.66, 0.38, 0.36])
_WHITE = np.array([0.86, 0.82, 0.80])
_TAN = np.array([0.70, 0.55, 0.40])
_SKIN_LIGHT = np.array([0.94, 0.78, 0.68])
_SKIN_DARK = np.array([0.50, 0.33, 0.24])


@dataclass(frozen=True)
class LesionParams:
    """What a lesion looks like, in units of the image half-width; the class evidence lives here."""

    label: int
    radius: float
    asymmetry: float  # amplitude of low-order (k=1..3) shape harmonics
    irregularity: float  # amplitude of high-order (k=5..14) border harmonics
    edge: float  # border softness
    n_colours: int  # extra pigment colours beyond the base
    n_dots: int
    atypical: float  # 0: textbook lesion; up to 0.75: features drawn towards another class
    pigment_style: int  # the class whose colours and network the lesion shows (its own unless atypical)
    dot_style: int  # the class whose dots / globules / cysts the lesion shows


# Per class: (radius range, asymmetry, irregularity, edge, colour range, dot range).
_CLASS_FEATURES = {
    0: ((0.24, 0.42), 0.03, 0.008, 0.07, (0, 1), (0, 3)),  # nevus
    1: ((0.34, 0.62), 0.16, 0.035, 0.035, (2, 4), (4, 12)),  # melanoma
    2: ((0.28, 0.50), 0.06, 0.015, 0.018, (0, 1), (4, 10)),  # seborrheic keratosis
}


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODES[split], index, stream])


def sample_label(seed: int, split: str, index: int) -> int:
    """The class of one sample (shares 40% nevus, 35% melanoma, 25% keratosis)."""
    return int(_rng(seed, split, index, 0).choice(len(SYNTHDERM_CLASSES), p=_CLASS_SHARES))


def sample_params(seed: int, split: str, index: int, label: int, atypical_rate: float = 0.12) -> LesionParams:
    """Draw the lesion parameters of one sample; a share `atypical_rate` drifts towards another class."""
    rng = _rng(seed, split, index, 1)
    own = _CLASS_FEATURES[label]
    atypical = 0.0
    other = label
    if rng.random() < atypical_rate:
        other = int(rng.choice([c for c in _CLASS_FEATURES if c != label]))
        atypical = float(rng.uniform(0.25, 0.75))
    mix = _CLASS_FEATURES[other]

    def blend(a: float, b: float) -> float:
        return (1 - atypical) * a + atypical * b

    (r_lo, r_hi), asym, irr, edge, (c_lo, c_hi), (d_lo, d_hi) = own
    (mr_lo, mr_hi), m_asym, m_irr, m_edge, (mc_lo, mc_hi), (md_lo, md_hi) = mix
    return LesionParams(
        label=label,
        radius=float(rng.uniform(blend(r_lo, mr_lo), blend(r_hi, mr_hi))),
        asymmetry=blend(asym, m_asym) * float(rng.uniform(0.6, 1.4)),
        irregularity=blend(irr, m_irr) * float(rng.uniform(0.6, 1.4)),
        edge=blend(edge, m_edge) * float(rng.uniform(0.7, 1.3)),
        n_colours=int(round(rng.uniform(blend(c_lo, mc_lo), blend(c_hi, mc_hi) + 0.999) - 0.5)),
        n_dots=int(rng.integers(round(blend(d_lo, md_lo)), round(blend(d_hi, md_hi)) + 1)),
        atypical=atypical,
        pigment_style=other if rng.random() < atypical else label,
        dot_style=other if rng.random() < atypical else label,
    )


@lru_cache(maxsize=16)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """Linear interpolation from `cells` grid points to `size` pixels, shape (size, cells)."""
    pos = np.linspace(0, cells - 1, size)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    mat = np.zeros((size, cells))
    mat[np.arange(size), lo] = 1 - frac
    mat[np.arange(size), lo + 1] = frac
    return mat


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in about [-1, 1] with `cells` control points per side, shape (size, size)."""
    mat = _interp_matrix(size, cells)
    return mat @ rng.uniform(-1, 1, (cells, cells)) @ mat.T


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (y, x), each (size, size)."""
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(axis, axis, indexing="ij")


def _squared_distances(size: int, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """(len(cy), size, size): each pixel centre's squared distance from each point (cy, cx), as a row term plus a
    column term: the same numbers as on the full grid, with a fraction of the work."""
    yy, xx = _grid(size)
    rows = (yy[None, :, 0] - cy[:, None]) ** 2
    columns = (xx[None, 0, :] - cx[:, None]) ** 2
    return rows[:, :, None] + columns[:, None, :]


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return image * (1 - alpha[..., None]) + colour * alpha[..., None]


def _render_skin(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    tone = rng.beta(1.6, 3.0)  # most dermoscopy datasets are dominated by fair skin
    base = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 0.02, 3)
    direction = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.0, 0.12) * (np.cos(direction) * xx + np.sin(direction) * yy)
    texture = 1 + 0.035 * _smooth_noise(rng, size, 12) + 0.015 * rng.normal(0, 1, (size, size))
    vignette = 1 - rng.uniform(0.0, 0.3) * np.clip(np.hypot(xx, yy) / 1.41, 0, 1) ** 2.5
    return base * (light * texture * vignette)[..., None]


def _lesion_alpha(rng: np.random.Generator, p: LesionParams, size: int, centre: np.ndarray) -> tuple:
    """Lesion coverage in [0, 1] and the normalised radial distance d (1 at the border)."""
    yy, xx = _grid(size)
    rot = rng.uniform(0, 2 * np.pi)
    aspect = rng.uniform(0.75, 1.0) if p.label != 1 else rng.uniform(0.6, 1.0)
    dy, dx = yy - centre[0], xx - centre[1]
    u = np.cos(rot) * dx + np.sin(rot) * dy
    v = (-np.sin(rot) * dx + np.cos(rot) * dy) / aspect
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    shape = np.ones_like(theta)
    for k in range(1, 4):
        shape += p.asymmetry * rng.uniform(0.4, 1.0) / k**0.5 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for k in range(5, 15):
        shape += p.irregularity * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    dist = rho / (p.radius * np.clip(shape, 0.35, None))
    # Melanoma borders are abrupt in some sectors and fade in others.
    edge = p.edge * (1 + 0.8 * p.asymmetry / 0.16 * np.cos(theta + rng.uniform(0, 2 * np.pi)))
    alpha = 0.5 * (1 + np.tanh((1 - dist) / (2 * np.clip(edge, 0.01, None))))  # a logistic that cannot overflow
    return alpha, dist


def _pigment(rng: np.random.Generator, p: LesionParams, size: int, dist: np.ndarray) -> np.ndarray:
    """The lesion's colour field, shape (size, size, 3)."""
    style = p.pigment_style
    yy, xx = _grid(size)
    if style == 2:  # seborrheic keratosis: waxy tan with cerebriform ridges
        base = _TAN + (_LIGHT_BROWN - _TAN) * rng.uniform(0, 1) + rng.normal(0, 0.02, 3)
        ridges = np.sin(14 * _smooth_noise(rng, size, 6) + 6 * _smooth_noise(rng, size, 10))
        colour = base * (1 + 0.10 * ridges)[..., None]
    else:
        shade = rng.uniform(0, 1)
        base = _LIGHT_BROWN + (_BROWN - _LIGHT_BROWN) * shade + rng.normal(0, 0.02, 3)
        centre_dark = 0.15 * np.clip(1 - dist, 0, 1)
        colour = base * (1 - centre_dark)[..., None]
        if style == 0:  # regular, faint pigment network
            freq = rng.uniform(9, 13) * np.pi
            net = np.sin(freq * xx) * np.sin(freq * yy)
            colour = colour * (1 - 0.06 * np.clip(net, 0, 1))[..., None]
        else:  # atypical network: irregular, broken
            net = np.clip(np.sin(10 * np.pi * _smooth_noise(rng, size, 9)), 0, 1)
            colour = colour * (1 - 0.10 * net)[..., None]
    extras = [_DARK_BROWN, _BLACK, _BLUE_GREY, _RED, _WHITE]
    if style == 0:
        extras = [_DARK_BROWN, _BROWN]
    order = rng.permutation(len(extras))
    for idx in order[: p.n_colours]:
        field = _smooth_noise(rng, size, 5)
        cut = rng.uniform(0.15, 0.5)
        alpha = np.clip((field - cut) / 0.3, 0, 1) * rng.uniform(0.5, 0.85)
        colour = _blend(colour, extras[idx] + rng.normal(0, 0.02, 3), alpha)
    return colour


def _dots(rng: np.random.Generator, p: LesionParams, size: int, centre: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Dots and globules (melanoma, nevus) or milia-like cysts and comedo-like openings (keratosis)."""
    style = p.dot_style
    if p.n_dots == 0:
        return image
    n = p.n_dots
    if style == 1:  # irregular, peripheral, of varying size
        rad = p.radius * rng.uniform(0.55, 1.05, n)
        sigma = rng.uniform(0.02, 0.06, n)
        colours = np.where(rng.random((n, 1)) < 0.5, _BLACK, _DARK_BROWN)
    elif style == 0:  # few, regular, central
        rad = p.radius * rng.uniform(0.0, 0.45, n)
        sigma = np.full(n, rng.uniform(0.025, 0.035))
        colours = np.tile(_BROWN * 0.8, (n, 1))
    else:
        rad = p.radius * np.sqrt(rng.uniform(0.0, 0.8, n))
        sigma = rng.uniform(0.018, 0.03, n)
        colours = np.where(rng.random((n, 1)) < 0.55, _WHITE + 0.08, _DARK_BROWN * 0.8)
    angle = rng.uniform(0, 2 * np.pi, n)
    cy = centre[0] + rad * np.sin(angle)
    cx = centre[1] + rad * np.cos(angle)
    d2 = _squared_distances(size, cy, cx)
    alphas = np.exp(-d2 / (2 * sigma[:, None, None] ** 2)) * 0.9
    for alpha, colour in zip(alphas, colours):
        image = _blend(image, colour, alpha)
    return image


def _hair(rng: np.random.Generator, size: int, image: np.ndarray) -> np.ndarray:
    if rng.random() > 0.35:
        return image
    colour = _BLACK + rng.uniform(0, 0.15)
    width = rng.uniform(0.6, 1.1) * 2 / size
    for _ in range(int(rng.integers(1, 5))):
        p0, p1, p2 = rng.uniform(-1.2, 1.2, (3, 2))
        t = np.linspace(0, 1, 3 * size)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # quadratic Bezier, (3 * size, 2)
        d2 = np.min(_squared_distances(size, curve[:, 0], curve[:, 1]), axis=0)
        alpha = 0.85 * np.exp(-d2 / (2 * width**2))
        image = _blend(image, colour, alpha)
    return image


def _skin_and_lesion(seed: int, split: str, index: int, label: int, size: int) -> tuple:
    """The first steps of a render, shared with `lesion_geometry`: the parameters, the generator as they leave it,
    the skin, the lesion's centre (y, x in [-1, 1]), its coverage and its normalised radial distance."""
    params = sample_params(seed, split, index, label)
    rng = _rng(seed, split, index, 2)
    skin = _render_skin(rng, size)
    centre = rng.normal(0, 0.07, 2)
    alpha, dist = _lesion_alpha(rng, params, size, centre)
    return params, rng, skin, centre, alpha, dist


@dataclass(frozen=True)
class LesionGeometry:
    """Where a sample's lesion lies in its image, in pixels, for drawing things that must meet it (ink around it,
    hair across its border)."""

    centre: tuple[float, float]  # (y, x) in pixel coordinates (pixel i spans [i, i + 1))
    angles: np.ndarray  # (A,) directions from the centre, radians, atan2(dy, dx) with y pointing down
    border: np.ndarray  # (A,) the border's distance from the centre along each direction, pixels
    mask: np.ndarray  # (size, size) bool: the lesion covers more than half of the pixel

    @property
    def radius(self) -> float:
        """The border's mean distance from the centre, pixels."""
        return float(self.border.mean())

    def border_at(self, angle: np.ndarray | float) -> np.ndarray:
        """The border's distance from the centre along `angle` (radians, any shape), interpolated, pixels."""
        return np.interp(np.mod(angle, 2 * np.pi), self.angles, self.border, period=2 * np.pi)


def lesion_geometry(
    seed: int, split: str, index: int, label: int, size: int = 64, n_angles: int = 180
) -> LesionGeometry:
    """The lesion of `render_sample(seed, split, index, label, size)`: its centre, its border along `n_angles`
    directions (where the normalised radial distance crosses 1, found on the pixel grid's interpolated field) and its
    mask; render_sample draws exactly this lesion."""
    _, _, _, centre, alpha, dist = _skin_and_lesion(seed, split, index, label, size)
    cy, cx = (centre + 1) / 2 * size
    angles = np.arange(n_angles) * 2 * np.pi / n_angles
    steps = np.arange(1, 2 * size + 1) / 2  # half-pixel steps out to the image's side
    ys = cy + np.sin(angles)[:, None] * steps - 0.5  # (A, S), in pixel-centre index units
    xs = cx + np.cos(angles)[:, None] * steps - 0.5
    along = _bilinear(dist, ys, xs)
    outside = along >= 1
    first = np.where(outside.any(axis=1), outside.argmax(axis=1), steps.size - 1)
    lo = np.maximum(first - 1, 0)
    rows = np.arange(n_angles)
    d0, d1 = along[rows, lo], along[rows, first]
    frac = np.clip((1 - d0) / np.where(d1 > d0, d1 - d0, 1), 0, 1)
    border = steps[lo] + frac * (steps[first] - steps[lo])
    return LesionGeometry(centre=(float(cy), float(cx)), angles=angles, border=border, mask=alpha > 0.5)


def _bilinear(field: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """`field` (H, W) at fractional indices (ys, xs), extended past its edges with the edge values."""
    h, w = field.shape
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.minimum(ys.astype(int), h - 2), np.minimum(xs.astype(int), w - 2)
    fy, fx = ys - y0, xs - x0
    top = field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx
    bottom = field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_sample(seed: int, split: str, index: int, label: int, size: int = 64) -> np.ndarray:
    """One dermoscopy image as uint8 (size, size, 3); deterministic in (seed, split, index, label, size)."""
    params, rng, image, centre, alpha, dist = _skin_and_lesion(seed, split, index, label, size)
    image = _blend(image, _pigment(rng, params, size, dist), alpha)
    image = _dots(rng, params, size, centre, image)
    image = _hair(rng, size, image)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
