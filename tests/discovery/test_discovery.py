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
    discover_class,
    latent_relevances,
    normalised_relevance,
    spectral_clusters,
)
from backend.discovery.candidates import _otsu
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
