"""Coverage of a CAV and the concept subspace, against hand-made changes: 1 along the CAV, 0 orthogonal to it, the
share of each direction in between; the basis starts with the CAV and holds the changes' further directions; a CAV's
basis is saved and read back with it."""

import json

import numpy as np
import pytest

from backend.concepts import (
    Cav,
    ChangeStats,
    concept_basis,
    coverage,
    cross_coverage,
    leading_share,
    load_cav,
)
from backend.errors import ConfigError


def _unit(c: int, n: int = 4) -> np.ndarray:
    e = np.zeros(n)
    e[c] = 1.0
    return e


def _cav(vector: np.ndarray) -> Cav:
    return Cav(vector, "pattern", "features.4", "mean", "marker", (), 2, 2, 0.0)


def test_a_change_along_the_cav_is_covered_and_one_orthogonal_to_it_is_not():
    h = _unit(0)
    assert coverage(np.array([[2.0, 0, 0, 0], [-3.0, 0, 0, 0]]), h) == pytest.approx(1.0)
    assert coverage(np.array([[0, 1.0, 0, 0], [0, 0, -2.0, 0]]), h) == pytest.approx(0.0)
    # (3, 4): 9 of 25 along h; with a second pair (0, 0, 0, 5) 9 of 50
    assert coverage(np.array([[3.0, 4.0, 0, 0]]), h) == pytest.approx(9 / 25)
    assert coverage(np.array([[3.0, 4.0, 0, 0], [0, 0, 0, 5.0]]), h) == pytest.approx(9 / 50)


def test_a_basis_covers_the_sum_of_its_directions_and_unpooled_maps_count_every_position():
    deltas = np.array([[3.0, 4.0, 0, 0], [0, 0, 0, 5.0]])
    basis = np.stack([_unit(0), _unit(1)])
    assert coverage(deltas, basis) == pytest.approx(25 / 50)
    assert coverage(deltas, np.stack([_unit(0), _unit(1), _unit(3)])) == pytest.approx(1.0)
    maps = np.zeros((1, 4, 2, 1))  # one image, two positions: (1, 0, 0, 0) and (0, 1, 0, 0)
    maps[0, 0, 0, 0], maps[0, 1, 1, 0] = 1.0, 1.0
    assert coverage(maps, _unit(0)) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="orthonormal"):
        coverage(deltas, np.stack([_unit(0), _unit(0)]))
    with pytest.raises(ConfigError, match="undefined"):
        coverage(np.zeros((3, 4)), _unit(0))


def test_statistics_of_two_parts_add_up_to_those_of_the_whole():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 4, 2, 2)), rng.normal(size=(3, 4, 2, 2))
    whole = ChangeStats.of(np.concatenate([a, b]))
    both = ChangeStats.of(a) + ChangeStats.of(b)
    np.testing.assert_allclose(both.gram, whole.gram)
    np.testing.assert_allclose(both.sum, whole.sum)
    assert both.rows == whole.rows == 32  # every position a row
    h = _unit(1)
    assert coverage(both, h) == pytest.approx(coverage(np.concatenate([a, b]), h))
    # a subspace built from one half, measured on the other (maps), or on the other's pooled changes
    halves = [ChangeStats.of(a), ChangeStats.of(b)]
    pooled = [ChangeStats.of(a.mean(axis=(2, 3))), ChangeStats.of(b.mean(axis=(2, 3)))]
    assert 0 < cross_coverage(h, halves, 2) < 1 and 0 < cross_coverage(h, halves, 2, pooled) < 1
    assert cross_coverage(h, halves, 4) == pytest.approx(1.0)  # all four channels: everything is covered


def test_the_leading_share_is_the_best_any_one_direction_covers():
    deltas = np.array([[3.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert leading_share(deltas) == pytest.approx(0.9)
    assert leading_share(deltas, k=2) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    deltas = rng.normal(size=(40, 4)) * [2.0, 1.0, 0.5, 0.1]
    best = max(coverage(deltas, v / np.linalg.norm(v)) for v in rng.normal(size=(200, 4)))
    assert best <= leading_share(deltas) + 1e-12


def test_the_basis_starts_with_the_cav_and_adds_the_changes_further_directions():
    rng = np.random.default_rng(1)
    h = np.array([1.0, 1.0, 0, 0, 0]) / np.sqrt(2)
    # changes along h, along e3 (strong) and e4 (weaker), nothing along the rest
    deltas = np.outer(rng.normal(size=60), h) + np.outer(3 * rng.normal(size=60), _unit(3, 5))
    deltas += np.outer(rng.normal(size=60), _unit(4, 5))
    basis = concept_basis(h, deltas, 3)
    assert basis.shape == (3, 5)
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(basis[0], h)
    # the sample's e3 and e4 coefficients correlate a little: the directions are e3 and e4 up to a small rotation
    assert abs(basis[1] @ _unit(3, 5)) > 0.99 and abs(basis[2] @ _unit(4, 5)) > 0.99
    assert coverage(deltas, basis) == pytest.approx(1.0)
    assert coverage(deltas, h) < 0.2
    assert cross_coverage(h, [ChangeStats.of(deltas[:30]), ChangeStats.of(deltas[30:])], 3) == pytest.approx(1.0)
    np.testing.assert_allclose(concept_basis(h, deltas, 1), h[None])
    with pytest.raises(ConfigError, match="rank of at most 3"):
        concept_basis(h, deltas, 4)  # the changes span h, e3 and e4 only


def test_a_held_out_coverage_does_not_flatter_a_subspace_of_noise():
    rng = np.random.default_rng(2)
    h = _unit(0, 16)
    deltas = rng.normal(size=(40, 16))  # no structure: any 4 directions hold about 4/16 of fresh changes
    in_sample = coverage(deltas, concept_basis(h, deltas, 4))
    held_out = cross_coverage(h, [ChangeStats.of(deltas[:20]), ChangeStats.of(deltas[20:])], 4)
    assert held_out < in_sample
    assert held_out == pytest.approx(4 / 16, abs=0.08)


def test_a_cavs_basis_is_saved_and_read_back_and_old_files_still_load(tmp_path):
    h = np.array([0.6, 0.8, 0.0])
    basis = np.array([h, [0.8, -0.6, 0.0], [0.0, 0.0, 1.0]])
    cav = _cav(h).with_basis(basis)
    assert cav.rank == 3 and _cav(h).rank == 1
    loaded = load_cav(cav.save(tmp_path / "subspace"))
    np.testing.assert_allclose(loaded.basis, basis)
    old = _cav(h).to_dict()
    del old["basis"]  # a file written before bases existed
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_cav(tmp_path / "old.json").basis is None
    assert _cav(h).with_basis(h[None]).basis is None  # rank 1 is the vector alone
    with pytest.raises(ConfigError, match="does not start with the CAV"):
        _cav(h).with_basis(basis[[1, 0, 2]])
    broken = cav.to_dict() | {"basis": [[0.6, 0.8, 0.0], [0.6, 0.8, 0.0]]}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match="not a concept subspace"):
        load_cav(tmp_path / "broken.json")
