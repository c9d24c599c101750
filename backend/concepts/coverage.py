"""How much of an artifact's effect on a layer lies along a CAV, and the concept subspace that holds more of it, as
pure functions over the paired activation changes δ_i = a(x_i with the artifact) − a(x_i).

Coverage of an orthonormal basis B (r, C) (a unit CAV h is the basis of rank 1) is Σ_i ||B δ_i||² / Σ_i ||δ_i||²:
the share of the squared change that a correction along those directions can see. A pooled CAV's changes are (N, C);
for unpooled maps (N, C, H, W) every position is a row.
"""

from __future__ import annotations

import numpy as np

from backend.errors import ConfigError

__all__ = ["change_rows", "concept_basis", "coverage", "held_out_coverage", "leading_share", "orthonormal_rows"]

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


def orthonormal_rows(directions: np.ndarray) -> np.ndarray:
    """`directions` (C,) or (r, C) as an (r, C) float64 array, checked to have orthonormal rows."""
    basis = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if basis.ndim != 2 or not len(basis) or not np.isfinite(basis).all():
        raise ConfigError(f"a concept basis is a finite (r, C) array; got shape {basis.shape}")
    if np.abs(basis @ basis.T - np.eye(len(basis))).max() > _ORTHONORMAL_TOL:
        raise ConfigError("the directions of a concept basis must be orthonormal (unit length, pairwise orthogonal)")
    return basis


def _gram(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Σ_i δ_i δ_iᵀ (C, C) of the rows and its trace Σ_i ||δ_i||² (positive, else coverage is undefined)."""
    gram = rows.T @ rows
    total = float(np.trace(gram))
    if total <= 0:
        raise ConfigError("the artifact does not change these activations: coverage is undefined")
    return gram, total


def coverage(deltas: np.ndarray, directions: np.ndarray) -> float:
    """Σ ||B δ_i||² / Σ ||δ_i||² of paired changes (N, C) or (N, C, *positions) for a unit CAV (C,) or an orthonormal
    basis B (r, C): 1 when the changes lie in the directions' span, 0 when they are orthogonal to it."""
    rows, basis = change_rows(deltas), orthonormal_rows(directions)
    if basis.shape[1] != rows.shape[1]:
        raise ConfigError(f"directions of {basis.shape[1]} channels for changes of {rows.shape[1]}")
    _, total = _gram(rows)
    return float(np.square(rows @ basis.T).sum()) / total


def leading_share(deltas: np.ndarray, k: int = 1) -> float:
    """The share of Σ ||δ_i||² that the k leading directions of the changes hold (their top singular values): the
    best coverage any k directions can reach."""
    gram, total = _gram(change_rows(deltas))
    eigenvalues = np.clip(np.linalg.eigvalsh(gram)[::-1], 0, None)
    return float(eigenvalues[:k].sum()) / total


def concept_basis(h: np.ndarray, deltas: np.ndarray, rank: int) -> np.ndarray:
    """An orthonormal basis (rank, C) of a concept subspace: the unit CAV `h` first, then the leading directions of
    the paired changes (N, C) or (N, C, *positions) once their component along `h` is removed (the right singular
    vectors of the residual changes), each oriented along the mean change."""
    h = orthonormal_rows(h)[0]
    rows = change_rows(deltas)
    if rows.shape[1] != len(h):
        raise ConfigError(f"a CAV of {len(h)} channels for changes of {rows.shape[1]}")
    if rank < 1 or rank > len(h):
        raise ConfigError(f"a concept subspace of {len(h)} channels has a rank from 1 to {len(h)}; got {rank}")
    if rank == 1:
        return h[None].copy()
    residual = rows - np.outer(rows @ h, h)
    _, total = _gram(rows)
    eigenvalues, vectors = np.linalg.eigh(residual.T @ residual)
    order = np.argsort(eigenvalues)[::-1][: rank - 1]
    found = int((eigenvalues[order] > 1e-12 * total).sum())
    if found < rank - 1:
        raise ConfigError(
            f"the artifact's changes span only {found} direction(s) besides the CAV; choose a rank of at most "
            f"{found + 1}"
        )
    more = vectors[:, order].T
    more *= np.where(more @ rows.mean(axis=0) < 0, -1.0, 1.0)[:, None]
    q, r = np.linalg.qr(np.vstack([h, more]).T)  # exact orthonormality, signs kept (the first row stays h)
    return orthonormal_rows((q * np.sign(np.diag(r))).T)


def held_out_coverage(h: np.ndarray, deltas: np.ndarray, rank: int, *, seed: int = 0) -> float:
    """The coverage of a concept subspace of `rank` on changes it was not built from: the pairs (the first axis of
    `deltas`) split in two random halves, each half's subspace measured on the other, pooled. A subspace measured on
    its own changes would flatter it (any r directions of the changes cover some of them)."""
    deltas = np.asarray(deltas, dtype=np.float64)
    if len(deltas) < 4:
        raise ConfigError(f"a held-out coverage needs at least 4 pairs; got {len(deltas)}")
    order = np.random.default_rng(seed).permutation(len(deltas))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    covered = total = 0.0
    for built, measured in (halves, halves[::-1]):
        basis = concept_basis(h, deltas[built], rank)
        rows = change_rows(deltas[measured])
        covered += float(np.square(rows @ basis.T).sum())
        total += float(np.square(rows).sum())
    if total <= 0:
        raise ConfigError("the artifact does not change these activations: coverage is undefined")
    return covered / total
