"""From heatmaps to artifact masks, and the numbers that judge them: IoU, pointing game, bias relevance R_bias.

Pure functions over arrays (N, H, W); the masks feed RRR's input-gradient penalty and R_bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, label

from backend.errors import ConfigError

__all__ = ["MaskConfig", "heatmap_masks", "strongest_region", "tune_mask_config", "iou", "pointing_game", "r_bias"]


@dataclass(frozen=True)
class MaskConfig:
    """Heatmap -> mask: keep positive relevance, blur (sigma in pixels), then hysteresis thresholds relative to the
    maximum: a region above `low` is kept only if it reaches `high` somewhere, so diffuse weak relevance elsewhere in
    the image (e.g. on the lesion) is dropped while the artifact keeps its full extent. Defaults were tuned on the
    validation split of the default model (see `bench attribution`)."""

    sigma: float = 1.0
    low: float = 0.1
    high: float = 0.4

    def __post_init__(self) -> None:
        if self.sigma < 0:
            raise ConfigError(f"blur sigma must not be negative, got {self.sigma}")
        if not 0 < self.low <= self.high < 1:
            raise ConfigError(f"thresholds need 0 < low <= high < 1, got low={self.low}, high={self.high}")


def _as_maps(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ConfigError(f"{name} must be (N, H, W) or (H, W), got shape {array.shape}")
    return array


def heatmap_masks(heatmaps: np.ndarray, config: MaskConfig | None = None) -> np.ndarray:
    """Binary masks (N, H, W) of where the positive relevance concentrates."""
    config = config or MaskConfig()
    maps = np.clip(_as_maps(heatmaps, "heatmaps").astype(np.float64), 0, None)
    masks = np.zeros(maps.shape, dtype=bool)
    for i, hm in enumerate(maps):
        if config.sigma > 0:
            hm = gaussian_filter(hm, config.sigma)
        peak = hm.max()
        if peak <= 0:
            continue
        regions, _ = label(hm >= config.low * peak)
        seeds = np.unique(regions[hm >= config.high * peak])
        masks[i] = np.isin(regions, seeds[seeds > 0])
    return masks


def strongest_region(masks: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Of each mask (N, H, W), the connected region holding the most positive relevance of its heatmap: where an
    artifact is, without the weaker regions a biased model also links to it (often the lesion itself)."""
    masks, maps = _as_maps(masks, "masks").astype(bool), np.clip(_as_maps(heatmaps, "heatmaps"), 0, None)
    if masks.shape != maps.shape:
        raise ConfigError(f"mask and heatmap shapes differ: {masks.shape} vs {maps.shape}")
    out = np.zeros_like(masks)
    for i, (mask, relevance) in enumerate(zip(masks, maps)):
        regions, n = label(mask)
        if n:
            mass = np.bincount(regions.ravel(), weights=relevance.ravel(), minlength=n + 1)[1:]
            out[i] = regions == 1 + int(np.argmax(mass))
    return out


def tune_mask_config(
    heatmaps: np.ndarray,
    true_masks: np.ndarray,
    sigmas: tuple[float, ...] = (0.5, 1.0, 1.5),
    lows: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25),
    highs: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.8),
) -> tuple[MaskConfig, float]:
    """The blur and thresholds whose masks best match known artifact masks (mean IoU), for the controlled setting:
    tune on one split, report on another."""
    best = (MaskConfig(), -1.0)
    for sigma in sigmas:
        for low in lows:
            for high in (h for h in highs if h >= low):
                config = MaskConfig(sigma, low, high)
                score = float(iou(heatmap_masks(heatmaps, config), true_masks).mean())
                if score > best[1]:
                    best = (config, score)
    return best


def iou(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Intersection over union per sample (N,); 1.0 where both masks are empty."""
    p, t = _as_maps(predicted, "predicted").astype(bool), _as_maps(true, "true").astype(bool)
    if p.shape != t.shape:
        raise ConfigError(f"mask shapes differ: {p.shape} vs {t.shape}")
    inter = (p & t).sum(axis=(1, 2))
    union = (p | t).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def pointing_game(heatmaps: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per sample (N,): does the heatmap's maximum fall inside the true mask?"""
    maps, t = _as_maps(heatmaps, "heatmaps"), _as_maps(true, "true").astype(bool)
    if maps.shape != t.shape:
        raise ConfigError(f"heatmap and mask shapes differ: {maps.shape} vs {t.shape}")
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return t.reshape(len(t), -1)[np.arange(len(t)), flat]


def r_bias(relevance: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bias relevance per sample (N,): the share of absolute input relevance inside the artifact mask."""
    r, m = np.abs(_as_maps(relevance, "relevance").astype(np.float64)), _as_maps(masks, "masks").astype(bool)
    if r.shape != m.shape:
        raise ConfigError(f"relevance and mask shapes differ: {r.shape} vs {m.shape}")
    total = r.sum(axis=(1, 2))
    inside = (r * m).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
