"""Discovery on real small runs: spectral clustering finds the groups and their number, latent relevances conserve
the logit and are cached, and on the default model a planted skin marker comes out as a top candidate."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from backend.bench.discovery import score
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.discovery import (
    DiscoveryCancelled,
    RevealConfig,
    SpectralClusters,
    discover_class,
    latent_relevances,
    normalised_relevance,
    spectral_clusters,
    whitened,
)
from backend.discovery.candidates import _cluster_groups, _otsu
from backend.errors import ConfigError
from backend.evaluation import predict_logits
from backend.models import load_checkpoint
from tests.conftest import SMALL_SPEC, run_backend

PLANTED_SPEC = "synthderm?n_train=400&n_val=30&n_test=30"  # 140 melanomas, 42 with a skin marker


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def test_spectral_clustering_finds_three_groups_and_their_number():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    truth = np.repeat(np.arange(3), [60, 30, 15])
    points = centres[truth] + rng.normal(scale=0.5, size=(len(truth), 3))
    found = spectral_clusters(points, max_clusters=6)
    assert found.n_clusters == 3
    for k in range(3):  # each true group is one cluster
        assert len(set(found.labels[truth == k])) == 1
    assert found.embedding.shape == (len(truth), 2)
    assert found.eigengap > 0.1


def test_whitening_lets_the_clustering_see_a_group_set_apart_along_a_direction_of_small_variance():
    # Two directions of large variance (the class's main reasons) and a group of 30% shifted along a third, small one:
    # a Euclidean neighbour graph follows the large directions; whitened, the shift splits the class.
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.3
    features = rng.normal(scale=0.2, size=(300, 24))
    features[:, :2] = rng.normal(scale=4.0, size=(300, 2))
    features[:, 2] += 2.0 * truth

    def best_precision(labels):  # of the clusters holding half the group or more
        halves = [truth[labels == c].mean() for c in set(labels) if (truth & (labels == c)).sum() >= truth.sum() / 2]
        return max(halves, default=0.0)

    assert best_precision(spectral_clusters(features).labels) < 0.6
    space = whitened(features)
    assert space.shape[1] < features.shape[1]  # the components of the last 2% of variance are dropped
    np.testing.assert_allclose(space.std(axis=0), 1.0)
    found = spectral_clusters(space)
    assert best_precision(found.labels) > 0.95


def test_cluster_unions_weigh_sizes_and_include_everything_off_the_main_mode():
    # A main mode of 200 and three clusters of 30: the two near each other (1, 2) are one union although 1 is nearer
    # the main mode's centre than to 2; 1, 2 and 3 together are everything off the main mode.
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [2.5, 3.0], [-8.0, 0.0]])
    labels = np.repeat(np.arange(4), [200, 30, 30, 30])
    clusters = SpectralClusters(labels, np.zeros(5), 4, 0.1, np.zeros((len(labels), 2)))
    groups = dict(_cluster_groups(centres[labels], clusters))
    assert (1, 2) in groups.values() and (0, 1) not in groups.values()
    assert groups["clusters 2+3+4"] == (1, 2, 3)
    assert len(set(groups.values())) == len(groups)


def test_otsu_splits_a_bimodal_sample_between_its_modes():
    values = np.concatenate([np.random.default_rng(1).normal(0.1, 0.02, 300), np.full(60, 0.6)])
    threshold = _otsu(values)
    assert 0.2 < threshold < 0.6
    assert (values > threshold).sum() == 60


def test_relevances_conserve_the_logit_and_are_cached(model, workspace):
    dataset = open_dataset(SMALL_SPEC, workspace)
    view = dataset.split("train")
    k = dataset.classes.index("melanoma")
    members = np.flatnonzero(view.labels == k)[:12]
    first = latent_relevances(model, view, dataset.dataset_id, members, "features.20", k, workspace=workspace)
    assert first.relevance.shape == first.activation.shape == (12, 128)
    logits = predict_logits(model.module, view.with_normalization(model.meta.normalization))[members, k].numpy()
    np.testing.assert_allclose(first.relevance.sum(axis=1), logits, rtol=0.05, atol=0.05)  # LRP conserves
    stopped = threading.Event()
    stopped.set()  # a cached result needs no batch, so a cancelled job still returns it
    again = latent_relevances(
        model, view, dataset.dataset_id, members, "features.20", k, workspace=workspace, cancel=stopped
    )
    np.testing.assert_array_equal(first.relevance, again.relevance)
    with pytest.raises(DiscoveryCancelled):  # not cached: stops before the first batch
        latent_relevances(model, view, dataset.dataset_id, members[:5], "features.20", k, cancel=stopped)
    assert np.allclose(np.abs(normalised_relevance(first.relevance)).sum(axis=1), 1.0)


def test_the_planted_skin_marker_is_a_top_candidate_of_melanoma(model, workspace):
    dataset = open_dataset(PLANTED_SPEC, workspace)
    view = dataset.split("train")
    planted = {sid for sid, flag in zip(view.sample_ids, view.has_artifact) if flag}
    found = discover_class(model, dataset, "melanoma", workspace=workspace)
    best = score(found, planted)
    assert best["rank"] is not None and best["rank"] <= 5
    assert best["precision"] >= 0.8 and best["recall"] >= 0.7, best
    assert [c.rank for c in found.candidates] == list(range(1, len(found.candidates) + 1))
    assert all(c.share < 0.5 and len(c.sample_ids) >= 5 for c in found.candidates)
    scores = [c.score for c in found.candidates]
    assert scores == sorted(scores, reverse=True)
    assert len(found.atlas) == 8 and all(len(a.top_relevant) == 8 for a in found.atlas)
    assert found.atlas[0].relevance_share >= found.atlas[-1].relevance_share
    candidate = found.candidates[0]
    assert np.isclose(np.linalg.norm(candidate.direction), 1.0) and len(candidate.direction) == 128
    assert set(candidate.references) <= set(candidate.sample_ids)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(class_name="lentigo"), "unknown class"),
        (dict(config=RevealConfig(layer="features.99")), "features.99"),
        (dict(config=RevealConfig(min_size=100)), "too few"),
    ],
)
def test_bad_requests_say_what_is_wrong(model, workspace, change, message):
    dataset = open_dataset(SMALL_SPEC, workspace)
    arguments = dict(class_name="melanoma", config=RevealConfig()) | change
    with pytest.raises(ConfigError, match=message):
        discover_class(model, dataset, arguments["class_name"], arguments["config"], workspace=workspace)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError):
        RevealConfig(max_clusters=1)
    with pytest.raises(ConfigError):
        RevealConfig(split="holdout")


def test_cli_reveal_prints_ranked_candidates_and_writes_json(tmp_path):
    out = tmp_path / "reveal.json"
    done = run_backend("reveal", "--dataset", SMALL_SPEC, "--class", "melanoma", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "melanoma:" in done.stdout and " 1. " in done.stdout
    payload = json.loads(out.read_text())
    assert list(payload["classes"]) == ["melanoma"]
    first = payload["classes"]["melanoma"]["candidates"][0]
    assert {"kind", "key", "sample_ids", "share", "score", "rank", "references", "direction"} <= set(first)
    assert first["rank"] == 1 and first["size"] == len(first["sample_ids"])
