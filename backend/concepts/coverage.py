"""How much of an artifact's effect on a layer lies along a CAV, and the concept subspace that holds more of it, as
pure functions over the paired activation changes δ_i = a(x_i with the artifact) − a(x_i).

Coverage of an orthonormal basis B (r, C) (a unit CAV h is the basis of rank 1) is Σ_i ||B δ_i||² / Σ_i ||δ_i||²:
the share of the squared change that a correction along those directions can see. Pooled changes are (N, C); for
unpooled maps (N, C, H, W) every position is a row, which is what a penalty at every position sees. Every figure
needs only the changes' sufficient statistics (`ChangeStats`: Σ δδᵀ and Σ δ), so maps of any size can be summed up
batch by batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.errors import ConfigError

__all__ = [
    "ChangeStats",
    "change_rows",
    "concept_basis",
    "coverage",
    "cross_coverage",
    "leading_share",
    "orthonormal_rows",
]

_ORTHONORMAL_TOL = 1e-6


def change_rows(deltas: np.ndarray) -> np.ndarray:
    """Paired changes (N, C), or (N, C, *positions) with every position a row, as rows (M, C) in float64."""
    deltas = np.asarray(deltas, dtype=np.float64)
    if deltas.ndim < 2:
        raise ConfigError(f"paired changes need shape (N, C) or (N, C, ...); got {deltas.shape}")
    rows = np.moveaxis(deltas, 1, -1).reshape(-1, deltas.shape[1])
    if not np.isfinite(rows).all():
        raise ConfigError("the paired activation changes hold NaN or infinite values")
    return rows


@dataclass(frozen=True)
class ChangeStats:
    """What coverage and the subspace need of paired changes: Σ δδᵀ (C, C) and Σ δ (C,) over their `rows`; two of
    them add up to the statistics of both."""

    gram: np.ndarray
    sum: np.ndarray
    rows: int

    @classmethod
    def of(cls, deltas: np.ndarray) -> ChangeStats:
        """The statistics of changes (N, C) or (N, C, *positions) (every position a row)."""
        rows = change_rows(deltas)
        return cls(rows.T @ rows, rows.sum(axis=0), len(rows))

    def __add__(self, other: ChangeStats) -> ChangeStats:
        return ChangeStats(self.gram + other.gram, self.sum + other.sum, self.rows + other.rows)

    @property
    def channels(self) -> int:
        return len(self.sum)

    def total(self) -> float:
        """Σ ||δ_i||²; zero changes leave coverage undefined, which is an error."""
        total = float(np.trace(self.gram))
        if total <= 0:
            raise ConfigError("the artifact does not change these activations: coverage is undefined")
        return total


def orthonormal_rows(directions: np.ndarray) -> np.ndarray:
    """`directions` (C,) or (r, C) as an (r, C) float64 array, checked to have orthonormal rows."""
    basis = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if basis.ndim != 2 or not len(basis) or not np.isfinite(basis).all():
        raise ConfigError(f"a concept basis is a finite (r, C) array; got shape {basis.shape}")
    if np.abs(basis @ basis.T - np.eye(len(basis))).max() > _ORTHONORMAL_TOL:
        raise ConfigError("the directions of a concept basis must be orthonormal (unit length, pairwise orthogonal)")
    return basis


def _stats(changes: np.ndarray | ChangeStats) -> ChangeStats:
    return changes if isinstance(changes, ChangeStats) else ChangeStats.of(changes)


def _covered(stats: ChangeStats, basis: np.ndarray) -> float:
    """Σ ||B δ_i||² of the changes."""
    if basis.shape[1] != stats.channels:
        raise ConfigError(f"directions of {basis.shape[1]} channels for changes of {stats.channels}")
    return float(np.einsum("rc,cd,rd->", basis, stats.gram, basis))


def coverage(changes: np.ndarray | ChangeStats, directions: np.ndarray) -> float:
    """Σ ||B δ_i||² / Σ ||δ_i||² of paired changes (N, C), (N, C, *positions) or their `ChangeStats` for a unit CAV
    (C,) or an orthonormal basis B (r, C): 1 when the changes lie in the directions' span, 0 when orthogonal to it."""
    stats = _stats(changes)
    return _covered(stats, orthonormal_rows(directions)) / stats.total()


def leading_share(changes: np.ndarray | ChangeStats, k: int = 1) -> float:
    """The share of Σ ||δ_i||² that the k leading directions of the changes hold (their top singular values): the
    best coverage any k directions can reach."""
    stats = _stats(changes)
    eigenvalues = np.clip(np.linalg.eigvalsh(stats.gram)[::-1], 0, None)
    return float(eigenvalues[:k].sum()) / stats.total()


def concept_basis(h: np.ndarray, changes: np.ndarray | ChangeStats, rank: int) -> np.ndarray:
    """An orthonormal basis (rank, C) of a concept subspace: the unit CAV `h` first, then the leading directions of
    the paired changes once their component along `h` is removed (the right singular vectors of the residual
    changes), each oriented along the mean change. `changes` as for `coverage`."""
    h = orthonormal_rows(h)[0]
    stats = _stats(changes)
    if stats.channels != len(h):
        raise ConfigError(f"a CAV of {len(h)} channels for changes of {stats.channels}")
    if rank < 1 or rank > len(h):
        raise ConfigError(f"a concept subspace of {len(h)} channels has a rank from 1 to {len(h)}; got {rank}")
    if rank == 1:
        return h[None].copy()
    residual = np.eye(len(h)) - np.outer(h, h)
    eigenvalues, vectors = np.linalg.eigh(residual @ stats.gram @ residual)
    order = np.argsort(eigenvalues)[::-1][: rank - 1]
    found = int((eigenvalues[order] > 1e-12 * stats.total()).sum())
    if found < rank - 1:
        raise ConfigError(
            f"the artifact's changes span only {found} direction(s) besides the CAV; choose a rank of at most "
            f"{found + 1}"
        )
    more = vectors[:, order].T
    more *= np.where(more @ stats.sum < 0, -1.0, 1.0)[:, None]
    q, r = np.linalg.qr(np.vstack([h, more]).T)  # exact orthonormality, signs kept (the first row stays h)
    return orthonormal_rows((q * np.sign(np.diag(r))).T)


def cross_coverage(
    h: np.ndarray, built: Sequence[ChangeStats], rank: int, measured: Sequence[ChangeStats] | None = None
) -> float:
    """The coverage of a concept subspace of `rank` on changes it was not built from: the pairs come in two halves,
    each half's subspace (from `built`) is measured on the other half (`measured`, default the same statistics:
    e.g. a subspace built from changes at every position measured on pooled ones), pooled over both."""
    measured = built if measured is None else measured
    if len(built) != 2 or len(measured) != 2:
        raise ConfigError("a held-out coverage takes the changes in two halves")
    covered = total = 0.0
    for own, other in ((0, 1), (1, 0)):
        covered += _covered(measured[other], concept_basis(h, built[own], rank))
        total += measured[other].total()
    return covered / total
