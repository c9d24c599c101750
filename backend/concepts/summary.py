"""What a run's record and a model card say about a CAV: where it came from, how it was fitted and, where it was
fitted for the run, its quality. Declared once here; the fit, the job and the export all build it."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from backend.concepts.cav import Cav

__all__ = ["CavSummary"]


@dataclass(frozen=True)
class CavSummary:
    """A CAV's description: `name` (a saved CAV's; None when fitted for the run) and `source` (what the user named,
    or "fitted for this run"), how it was fitted, and its quality figures where they were measured. `rank` is the
    number of directions a correction penalises (1: the CAV alone; more: a concept subspace); `coverage` the share of
    the artifact's squared activation change (pooled as the CAV is) along the CAV, `subspace_coverage` along all
    `rank` directions, and `coverage_detail` the whole measurement (`CavCoverage`: the same at every position, the
    leading direction's share, the pairs' source, split and number)."""

    kind: str | None = None
    layer: str | None = None
    pooling: str | None = None
    concept: str | None = None
    scope: str | None = None
    attacked_class: str | None = None
    n_concept: int | None = None
    n_other: int | None = None
    name: str | None = None
    source: str | None = None
    fit_seconds: float | None = None
    params: dict | None = None
    train_auc: float | None = None
    held_out_auc: float | None = None
    alignment: float | None = None
    significance: dict | None = None
    rank: int | None = None
    coverage: float | None = None
    subspace_coverage: float | None = None
    coverage_detail: dict | None = None

    @classmethod
    def of(cls, cav: Cav, **more) -> CavSummary:
        """The summary of `cav`, with `more` (name, source, quality) on top."""
        fitted = {k: getattr(cav, k) for k in ("kind", "layer", "pooling", "concept", "scope", "attacked_class")}
        return cls(**fitted, n_concept=cav.n_concept, n_other=cav.n_other, rank=cav.rank, **more)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> CavSummary:
        """The summary as `to_dict` (or an older record) wrote it; other keys (a card's vector) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})
