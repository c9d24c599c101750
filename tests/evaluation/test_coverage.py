"""Coverage measured on a model: the paired changes are the activations with the artifact minus those without, a
sweep measures one CAV per layer in one pass (pooled and at every position), and transplanted pairs leave out the
images that show the artifact."""

import numpy as np
import pytest

from backend.concepts import cached_activations, collect_activations, coverage, fit_cav, leading_share
from backend.data import Donor, TransplantAttack
from backend.defaults import DEFAULT_CHECKPOINT
from backend.evaluation import AttackedSet, cav_coverage, paired_changes, training_pairs
from backend.models import load_checkpoint

LAYERS = ("features.13", "features.20")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def cavs(model, small_dataset, workspace):
    train = small_dataset.split("train")
    fitted = []
    for layer in LAYERS:
        acts = cached_activations(model, train, small_dataset.dataset_id, layer, "mean", workspace=workspace)
        fitted.append(fit_cav(np.asarray(acts.values), acts.has_artifact.astype(int), layer=layer, pooling="mean"))
    return fitted


def test_paired_changes_are_the_activations_with_the_artifact_minus_those_without(model, small_dataset):
    clean = small_dataset.split("train", "clean")
    attacked = small_dataset.split("train", "attacked")
    indices = [3, 0, 7, 11]
    for pooling, shape in (("mean", (4, 128)), ("none", (4, 128, 8, 8))):
        changes = paired_changes(model, clean, attacked, indices, "features.20", pooling)
        expected = collect_activations(model, attacked, "features.20", pooling, indices=indices)
        expected = expected - collect_activations(model, clean, "features.20", pooling, indices=indices)
        assert changes.shape == shape
        np.testing.assert_allclose(changes, expected, rtol=1e-4, atol=1e-5)


def test_a_layer_sweep_measures_each_cav_in_its_own_layer(model, small_dataset, cavs):
    pairs = training_pairs(model, small_dataset, cavs[0])
    results = cav_coverage(model, small_dataset, cavs, pairs, max_pairs=40)
    assert [r.layer for r in results] == list(LAYERS)
    for result in results:
        assert (result.source, result.split, result.n_pairs, result.rank) == ("planted", "train", 40, 1)
        assert 0 < result.coverage <= result.leading_share + 1e-9 <= 1 + 1e-9
        assert result.subspace_coverage is None
        assert result.summary_fields()["coverage_detail"]["n_pairs"] == 40
    # the same figure by hand, from all 120 pairs of the split
    clean, attacked = small_dataset.split("train", "clean"), small_dataset.split("train", "attacked")
    maps = paired_changes(model, clean, attacked, range(len(clean)), "features.20", "none")
    (whole,) = cav_coverage(model, small_dataset, cavs[1], pairs)
    assert whole.n_pairs == len(clean)
    assert whole.coverage == pytest.approx(coverage(maps.mean(axis=(2, 3)), cavs[1].vector), rel=1e-4)
    assert whole.leading_share == pytest.approx(leading_share(maps.mean(axis=(2, 3))), rel=1e-4)
    assert whole.position_coverage == pytest.approx(coverage(maps, cavs[1].vector), rel=1e-4)
    assert whole.position_leading_share == pytest.approx(leading_share(maps), rel=1e-4)
    assert whole.position_coverage < whole.coverage  # changes that differ between positions cancel in the mean


def test_transplanted_pairs_leave_out_the_images_that_show_the_artifact(model, small_dataset, cavs):
    train = small_dataset.split("train")
    at = np.flatnonzero(train.has_artifact)
    donors = [Donor(train.sample_ids[i], train.image(i), train.mask(i)) for i in at[:4]]  # the planted masks
    views = tuple(
        small_dataset.split("train", "attacked", model.meta.normalization, attack=TransplantAttack(donors, round=r))
        for r in range(2)
    )
    pairs = AttackedSet("transplanted", views, np.arange(len(train)), {})
    marked = {train.sample_ids[i] for i in at}
    (result,) = cav_coverage(model, small_dataset, cavs[1], pairs, artifact_ids=marked, max_pairs=1000)
    assert result.source == "transplanted"
    assert result.n_pairs == 2 * (len(train) - len(marked))  # two rounds of every image without the artifact
    assert 0 < result.coverage < 1
