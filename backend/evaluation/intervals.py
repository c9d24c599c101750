"""How sure an accuracy is: bootstrap intervals over what was sampled to measure it.

An attacked accuracy averages over test images and, for the transplant, over the donors whose artifact was pasted
(each round another donor per image). Both are samples: other test images or other annotated donors would give
another figure. The bootstrap resamples images and donors independently (a two-way, "pigeonhole" bootstrap: a cell
(image, round) weighs its image's count times its donor's count), so an interval is as wide as both sources make it.
The gap closed by a correction is resampled paired: the same draws weigh the model before and after.
Pure functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BOOTSTRAP_DRAWS", "LEVEL", "SampleHits", "accuracy_interval", "gap_closed_interval"]

BOOTSTRAP_DRAWS = 2000
LEVEL = 0.95  # the intervals' coverage


@dataclass(frozen=True)
class SampleHits:
    """Which predictions of one evaluation were right, per sample, so figures can be resampled: `clean` (N,) over the
    split, `attacked` (M, R) over the attacked samples (`indices` into the split) and rounds, and `donors` (M, R) the
    donor of each attacked cell (None: no donors, e.g. a planted or supplied attack)."""

    clean: np.ndarray
    attacked: np.ndarray | None = None
    indices: np.ndarray | None = None
    donors: np.ndarray | None = None


def _weights(hits: SampleHits, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Bootstrap counts (B, N) of the split's images and, with donors, (B, D) of the donors."""
    rng = np.random.default_rng(seed)
    n = len(hits.clean)
    images = rng.multinomial(n, np.full(n, 1 / n), size=draws).astype(np.float32)
    donors = None
    if hits.donors is not None:
        d = int(hits.donors.max()) + 1
        donors = rng.multinomial(d, np.full(d, 1 / d), size=draws).astype(np.float32)
    return images, donors


def _attacked_rates(hits: SampleHits, images: np.ndarray, donors: np.ndarray | None) -> np.ndarray:
    """The attacked accuracy of every draw (B,): cells weighted by their image's and their donor's counts."""
    per_image = images[:, hits.indices]  # (B, M)
    total = np.zeros(len(images), dtype=np.float64)
    right = np.zeros(len(images), dtype=np.float64)
    for r in range(hits.attacked.shape[1]):  # a round at a time: (B, M) cells, not (B, M, R)
        cells = per_image if donors is None else per_image * donors[:, hits.donors[:, r]]
        total += cells.sum(axis=1)
        right += cells @ hits.attacked[:, r].astype(np.float32)
    return np.divide(right, total, out=np.full_like(total, np.nan), where=total > 0)


def _clean_rates(hits: SampleHits, images: np.ndarray) -> np.ndarray:
    return (images * hits.clean).sum(axis=1) / images.sum(axis=1)


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


def accuracy_interval(hits: SampleHits, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0, level: float = LEVEL):
    """[low, high] of the attacked accuracy at `level`, resampling test images and donors; None without attacked
    hits."""
    if hits.attacked is None or hits.attacked.size == 0:
        return None
    images, donors = _weights(hits, draws, seed)
    return _percentiles(_attacked_rates(hits, images, donors), level)


def gap_closed_interval(
    before: SampleHits, after: SampleHits, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0, level: float = LEVEL
) -> list[float] | None:
    """[low, high] of the share of the clean-vs-attacked gap a correction closed, 1 − gap_after / gap_before, with
    the same draws of images and donors weighing both models; draws without a gap before are left out. None without
    attacked hits or when the two evaluations do not share their samples."""
    if before.attacked is None or after.attacked is None or before.attacked.shape != after.attacked.shape:
        return None
    if len(before.clean) != len(after.clean):
        return None
    images, donors = _weights(before, draws, seed)
    gap_before = _clean_rates(before, images) - _attacked_rates(before, images, donors)
    gap_after = _clean_rates(after, images) - _attacked_rates(after, images, donors)
    closed = np.where(gap_before > 0, 1 - gap_after / np.where(gap_before > 0, gap_before, 1), np.nan)
    if np.isfinite(closed).mean() < 0.5:  # no gap in most draws: a share of it says nothing
        return None
    return _percentiles(closed, level)
