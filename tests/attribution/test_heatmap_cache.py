"""Explore-page backend: cached predictions and heatmaps equal direct computation, the heatmap cache fills only what
is missing and survives corruption and concurrent writers, outlier scores, embeddings and ROC points."""

import threading

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_curve

from backend.attribution import (
    cached_heatmaps,
    cached_outlier_scores,
    class_heatmaps,
    heatmap_features,
    heatmap_outlier_scores,
    split_heatmap_features,
    split_outlier_scores,
    stored_outlier_scores,
)
from backend.concepts import embedding, project_embedding, roc_points
from backend.data import view_batch
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.evaluation import cached_predictions, predict_logits
from backend.models import load_checkpoint


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def view(small_dataset):
    return small_dataset.split("train")


def _direct(model, view, indices) -> np.ndarray:
    x, _ = view_batch(view, indices, model.meta.normalization)
    return class_heatmaps(model, x).maps


def _files(root):
    return {p.name: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_cached_predictions_equal_a_softmax_of_the_forward_pass_and_hit_the_cache(model, small_dataset, tmp_path):
    view = small_dataset.split("test")
    assert model.output_layer() in ("classifier", "classifier.6")
    first = cached_predictions(model, view, small_dataset.dataset_id, workspace=tmp_path)
    with torch.no_grad():
        logits = predict_logits(model.module, view.with_normalization(model.meta.normalization))
    expected = torch.softmax(logits.double(), dim=1).numpy()
    assert first.probs.dtype == np.float32 and first.probs.shape == (len(view), 3)
    np.testing.assert_allclose(first.probs, expected, atol=1e-5)
    np.testing.assert_array_equal(first.predicted, expected.argmax(1))
    np.testing.assert_allclose(first.confidence, expected.max(1), atol=1e-5)
    np.testing.assert_array_equal(first.correct, expected.argmax(1) == view.labels)
    assert first.sample_ids == view.sample_ids and first.labels.dtype == np.int64
    files = _files(tmp_path / "cache")
    second = cached_predictions(model, view, small_dataset.dataset_id, workspace=tmp_path)
    assert _files(tmp_path / "cache") == files
    np.testing.assert_array_equal(second.probs, first.probs)


def test_cached_heatmaps_equal_direct_ones_and_fill_only_what_is_missing(model, view, small_dataset, tmp_path):
    def request(indices):
        events = []
        maps = cached_heatmaps(
            model, view, small_dataset.dataset_id, indices, workspace=tmp_path, batch_size=2, on_progress=events.append
        )
        return maps, (events[-1].metrics["samples"] if events else 0)

    first, computed = request([4, 1, 1, 7])
    assert first.shape == (4, 64, 64) and first.dtype == np.float32 and computed == 3
    np.testing.assert_allclose(first, _direct(model, view, [4, 1, 1, 7]), atol=1e-5)
    (filled_path,) = (tmp_path / "cache" / "heatmaps").glob("*.filled.npy")
    assert np.flatnonzero(np.load(filled_path)).tolist() == [1, 4, 7]
    second, computed = request([7, 8, 9, 1])
    assert computed == 2 and np.flatnonzero(np.load(filled_path)).tolist() == [1, 4, 7, 8, 9]
    np.testing.assert_allclose(second, _direct(model, view, [7, 8, 9, 1]), atol=1e-5)
    third, computed = request([9, 4])
    assert computed == 0
    np.testing.assert_array_equal(third, np.stack([second[2], first[0]]))
    assert request([])[0].shape == (0, 64, 64)
    with pytest.raises(ConfigError):
        request([len(view)])


def test_corrupt_or_missing_heatmap_cache_files_are_rebuilt(model, view, small_dataset, tmp_path):
    def request():
        return cached_heatmaps(model, view, small_dataset.dataset_id, [0, 2], workspace=tmp_path)

    expected = _direct(model, view, [0, 2])
    request()
    root = tmp_path / "cache" / "heatmaps"
    (values_path,) = [p for p in root.glob("*.npy") if not p.name.endswith(".filled.npy")]
    filled_path = values_path.with_name(values_path.stem + ".filled.npy")
    values_path.write_bytes(b"not a numpy file")
    np.testing.assert_allclose(request(), expected, atol=1e-5)
    values_path.write_bytes(values_path.read_bytes()[:1000])  # truncated
    np.testing.assert_allclose(request(), expected, atol=1e-5)
    filled_path.write_bytes(b"\x93NUMPY garbage")
    np.testing.assert_allclose(request(), expected, atol=1e-5)
    values_path.unlink()
    np.testing.assert_allclose(request(), expected, atol=1e-5)
    assert np.flatnonzero(np.load(filled_path)).tolist() == [0, 2]
    assert not list(root.glob("*.tmp*"))


def test_concurrent_writers_never_store_wrong_maps(view, small_dataset, tmp_path):
    models = [load_checkpoint(DEFAULT_CHECKPOINT) for _ in range(2)]  # one per thread: LRP rewires the module
    sets = [list(range(0, 12)), list(range(6, 18))]
    results: dict[int, np.ndarray] = {}

    def work(i):
        dataset_id = small_dataset.dataset_id
        results[i] = cached_heatmaps(models[i], view, dataset_id, sets[i], workspace=tmp_path, batch_size=3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = _direct(models[0], view, range(18))
    np.testing.assert_allclose(results[0], expected[:12], atol=1e-5)
    np.testing.assert_allclose(results[1], expected[6:], atol=1e-5)
    again = cached_heatmaps(models[0], view, small_dataset.dataset_id, range(18), workspace=tmp_path)
    np.testing.assert_allclose(again, expected, atol=1e-5)


def _blob(centre: tuple[float, float], size: int = 32, width: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * width**2))


def _reference_scores(maps: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    """Slow reference: block-mean pooling (H divisible by size), L1 normalisation, distance over median distance."""
    n, h, w = maps.shape
    unit = []
    for m in maps:
        pooled = m.reshape(size, h // size, size, w // size).mean(axis=(1, 3)).ravel()
        total = np.abs(pooled).sum()
        unit.append(pooled / total if total > 0 else pooled)
    unit = np.array(unit)
    scores = np.zeros(n)
    for g in set(groups.tolist()):
        idx = [i for i in range(n) if groups[i] == g]
        centre = unit[idx].mean(axis=0)
        dist = np.array([np.sqrt(((unit[i] - centre) ** 2).sum()) for i in idx])
        scores[idx] = dist / np.median(dist) if np.median(dist) > 0 else 0.0
    return scores


def test_outlier_scores_rank_an_atypical_map_first_and_are_one_at_the_median():
    rng = np.random.default_rng(0)
    maps = np.stack([_blob((16 + rng.normal(0, 1.5), 16 + rng.normal(0, 1.5))) for _ in range(20)] + [_blob((2, 2))])
    scores = heatmap_outlier_scores(maps, np.zeros(len(maps), dtype=int))
    assert scores.argmax() == 20 and scores[20] > 3 * np.sort(scores)[-2] / 2
    assert np.median(scores) == pytest.approx(1.0)
    scale = heatmap_outlier_scores(maps * 7.0, np.zeros(len(maps), dtype=int))
    np.testing.assert_allclose(scale, scores, atol=1e-9)  # unit L1 norm: the scale of relevance does not matter
    groups = np.array(["a"] * 10 + ["b"] * 10 + ["c"])
    lone = heatmap_outlier_scores(maps, groups)
    assert lone[20] == 0.0
    signed = rng.normal(size=(15, 32, 32)) * np.r_[np.ones(14), 0.0][:, None, None]  # one all-zero map
    signed_groups = rng.integers(0, 3, 15)
    np.testing.assert_allclose(
        heatmap_outlier_scores(signed, signed_groups, size=8), _reference_scores(signed, signed_groups, 8), atol=1e-9
    )
    with pytest.raises(ConfigError):
        heatmap_outlier_scores(maps[0], np.zeros(32))
    with pytest.raises(ConfigError):
        heatmap_outlier_scores(maps, np.zeros(3))
    with pytest.raises(ConfigError):
        heatmap_outlier_scores(maps, np.zeros(len(maps)), size=0)


def test_split_outlier_scores_group_cached_heatmaps_by_predicted_class(model, small_dataset, tmp_path):
    view = small_dataset.split("val")
    predicted = cached_predictions(model, view, small_dataset.dataset_id, workspace=tmp_path).predicted
    scores = split_outlier_scores(model, view, small_dataset.dataset_id, predicted, workspace=tmp_path)
    maps = cached_heatmaps(model, view, small_dataset.dataset_id, range(len(view)), workspace=tmp_path)
    assert scores.shape == (len(view),) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, heatmap_outlier_scores(maps, predicted), atol=1e-9)
    features = split_heatmap_features(model, view, small_dataset.dataset_id, workspace=tmp_path)
    np.testing.assert_allclose(features, heatmap_features(maps), atol=1e-12)  # stored, read back the same


def test_outlier_scores_are_the_same_cold_or_warm_and_a_damaged_file_is_computed_again(model, small_dataset, tmp_path):
    view, dataset_id = small_dataset.split("val"), small_dataset.dataset_id
    predicted = cached_predictions(model, view, dataset_id, workspace=tmp_path).predicted
    assert stored_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path) is None
    cold = cached_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path)
    warm = cached_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path)
    stored = stored_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path)
    assert cold.tobytes() == warm.tobytes() == stored.tobytes()
    assert stored_outlier_scores(model, view, dataset_id, 1 - predicted, workspace=tmp_path) is None  # keyed by them
    for path in (tmp_path / "cache" / "outliers").glob("*.npy"):  # the scores and the features
        path.write_bytes(b"not a numpy file")
    assert stored_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path) is None
    assert cached_outlier_scores(model, view, dataset_id, predicted, workspace=tmp_path).tobytes() == cold.tobytes()


def test_tsne_of_a_large_split_maps_a_subsample_and_places_the_rest_among_their_neighbours(monkeypatch):
    monkeypatch.setattr(embedding, "TSNE_MAX_POINTS", 60)
    rng = np.random.default_rng(4)
    blobs = np.repeat(np.arange(3), 80)
    features = rng.normal(size=(240, 20)) + 3.0 * rng.normal(size=(3, 20))[blobs]  # three well-separated clusters
    points = project_embedding(features, "tsne", seed=2)
    assert points.shape == (240, 2) and np.isfinite(points).all()
    np.testing.assert_array_equal(project_embedding(features, "tsne", seed=2), points)  # deterministic
    distances = np.linalg.norm(points[:, None] - points[None], axis=2) + np.diag(np.full(240, np.inf))
    assert (blobs[distances.argmin(axis=1)] == blobs).mean() > 0.97  # mapped or placed, each lands in its cluster
    features[7] = features[100]  # a duplicate of a sample lands on it, whichever of the two was mapped
    twin = project_embedding(features, "tsne", seed=2)
    np.testing.assert_allclose(twin[7], twin[100], atol=1e-3)


def test_pca_embedding_equals_sklearn_on_standardised_features_and_tsne_is_deterministic():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 2, 3, 2)) * rng.uniform(0.1, 10, size=(2, 3, 2))
    features[:, 0, 0, 0] = 5.0  # a constant dimension stays at 0 after standardising
    flat = features.reshape(40, -1)
    std = flat.std(axis=0)
    standardised = np.where(std > 0, (flat - flat.mean(axis=0)) / np.where(std > 0, std, 1), 0.0)
    expected = PCA(n_components=2, svd_solver="full").fit_transform(standardised)
    got = project_embedding(features, "pca")
    assert got.shape == (40, 2)
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got * signs, expected, atol=1e-8)
    tsne = project_embedding(features, "tsne", seed=3)
    assert tsne.shape == (40, 2) and np.isfinite(tsne).all()
    np.testing.assert_array_equal(project_embedding(features, "tsne", seed=3), tsne)
    assert np.isfinite(project_embedding(features[:3], "tsne")).all()
    for bad in (features[:2], np.full((5, 3), np.nan)):
        with pytest.raises(ConfigError):
            project_embedding(bad)
    with pytest.raises(ConfigError):
        project_embedding(features, "umap")


def test_roc_points_match_sklearn_and_need_both_labels():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 50)
    scores = labels + rng.normal(0, 0.8, 50)
    fpr, tpr = roc_points(scores, labels)
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    fpr, tpr = roc_points(scores, labels.astype(bool))
    np.testing.assert_allclose(tpr, ref_tpr)
    for bad_labels in (np.ones(50, dtype=int), labels[:10], labels + 1):
        with pytest.raises(ConfigError):
            roc_points(scores, bad_labels)
