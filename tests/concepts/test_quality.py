"""CAV quality measures against slow references written here, and the active-annotation ranking."""

import json

import numpy as np
import pytest

from backend.concepts import (
    CavConfig,
    alignment,
    can_test_significance,
    divergence,
    separability_auc,
    significance,
    suggest_samples,
)
from backend.errors import ConfigError
from tests.conftest import run_backend


def _slow_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    scores = rng.normal(size=80) + labels
    scores[:5] = 0.0  # ties
    assert separability_auc(scores, labels) == pytest.approx(_slow_auc(scores, labels))
    assert separability_auc(labels.astype(float), labels) == 1.0
    with pytest.raises(ConfigError, match="with and without"):
        separability_auc(scores, np.ones(80))


def test_alignment_of_the_true_direction_is_one_and_of_an_orthogonal_one_zero():
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(50, 8))
    direction = np.eye(8)[2]
    attacked = clean + direction * rng.uniform(0.5, 2.0, (50, 1))
    true = alignment(direction, attacked, clean)
    assert true.mean == pytest.approx(1.0) and np.allclose(true.per_sample, 1.0)
    assert alignment(np.eye(8)[3], attacked, clean).mean == pytest.approx(0.0, abs=1e-12)
    assert alignment(-direction, attacked, clean).mean == pytest.approx(-1.0)
    with pytest.raises(ConfigError, match="paired activations"):
        alignment(direction, attacked[:10], clean)


def test_divergence_is_a_symmetric_cosine_matrix():
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 1.0]), "c": np.array([0.0, -2.0])}
    d = divergence(vectors)
    assert d["a"]["a"] == pytest.approx(1.0) and d["a"]["b"] == pytest.approx(2**-0.5) == d["b"]["a"]
    assert d["a"]["c"] == pytest.approx(0.0) and d["b"]["c"] == pytest.approx(-(2**-0.5))


def test_significance_separates_a_real_concept_from_random_labels():
    rng = np.random.default_rng(2)
    y = np.array([0, 1] * 60)
    real = rng.normal(size=(120, 16)) + 2.5 * y[:, None] * np.eye(16)[0]
    result = significance(real, y, CavConfig(kind="pattern"), n_random=30)
    assert result.score > 0.85 and result.p_value <= 0.05 and result.significant
    assert len(result.null) == 30 and result.null.mean() < 0.7
    noise = rng.normal(size=(120, 16))
    assert not significance(noise, y, n_random=30).significant


def test_significance_with_a_rare_concept_keeps_both_groups_in_every_held_out_part():
    """9 positives among 80: a fixed held-out part would often get no positive under a random permutation."""
    rng = np.random.default_rng(1)
    y = np.zeros(80, dtype=np.int64)
    y[:9] = 1
    x = rng.normal(size=(80, 16)) + y[:, None] * 0.8
    result = significance(x, y, n_random=200)
    assert np.isfinite(result.null).all() and result.p_value < 0.05


def test_significance_needs_two_samples_per_group_after_holding_out():
    assert not can_test_significance(np.array([1, 1, 0, 0, 0, 0]))
    assert can_test_significance(np.array([1, 1, 1, 0, 0, 0]))
    with pytest.raises(ConfigError, match="too few samples"):
        significance(np.eye(6), np.array([1, 1, 0, 0, 0, 0]), n_random=5)


def test_suggest_returns_the_best_unlabelled_samples_first():
    ids = [f"s{i}" for i in range(6)]
    scores = np.array([0.1, 0.9, 0.5, 0.95, 0.3, 0.7])
    assert suggest_samples(scores, ids, labelled={"s3"}, k=3) == [("s1", 0.9), ("s5", 0.7), ("s2", 0.5)]
    assert suggest_samples(scores, ids, labelled=set(ids)) == []
    with pytest.raises(ConfigError, match="6 scores for 5 samples"):
        suggest_samples(scores, ids[:5], labelled=set())


def test_bench_cav_quick_meets_the_paper_claims(tmp_path):
    out = tmp_path / "cav.json"
    done = run_backend("bench", "cav", "--quick", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    kinds = figures["kinds"]
    assert set(kinds) == {"pattern", "svm", "ridge", "lasso", "logistic"}
    assert figures["layer"] == "features.20"
    best_filter = max(kinds[k]["alignment"] for k in kinds if k != "pattern")
    assert kinds["pattern"]["alignment"] >= 0.8 and kinds["pattern"]["alignment"] >= best_filter
    assert kinds["pattern"]["auc"] >= 0.9
    assert figures["pattern_vs_svm_fit_speedup"] >= 100
    assert figures["cache"]["speedup"] >= 20
    assert "alignment" in done.stdout
