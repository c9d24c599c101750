"""Saved CAVs: kept in the workspace with their record and quality, found by name after a restart, renamed,
deleted, exported and imported; a CAV that does not fit the model is refused."""

import json

import numpy as np
import pytest

from backend.concepts import CavLibrary, fit_concept, load_cav, planted_labels, resolve_cav
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ConfigError
from backend.models import load_checkpoint, model_fingerprint


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def fit(model, small_dataset, workspace):
    return fit_concept(model, small_dataset, planted_labels(small_dataset), n_random=5, workspace=workspace)


def test_a_saved_cav_survives_a_restart_with_its_record(model, small_dataset, fit, tmp_path):
    saved = CavLibrary(tmp_path).save(fit, "skin marker v1", dataset_id=small_dataset.dataset_id, model=model)
    again = CavLibrary(tmp_path)  # a new process would open the same files
    record = again.get("skin marker v1", dataset_id=small_dataset.dataset_id, model=model)
    assert record.id == saved.id and record.model == model_fingerprint(model)
    assert (record.layer, record.kind, record.pooling, record.scope) == (
        "features.20",
        "pattern",
        "mean",
        "attacked_class",
    )
    assert record.attacked_class == "melanoma" and record.n_concept == fit.cav.n_concept
    assert record.quality["train_auc"] == pytest.approx(fit.train_auc)
    cav = record.load()
    np.testing.assert_array_equal(cav.vector, fit.cav.vector)
    assert cav.name == "skin marker v1" and cav.concept_ids == fit.cav.concept_ids
    assert [c.name for c in again.list(dataset_id=small_dataset.dataset_id, model=model)] == ["skin marker v1"]
    assert again.list(dataset_id="another dataset") == []


def test_names_are_unique_renamed_and_deleted_with_their_file(model, small_dataset, fit, tmp_path):
    library = CavLibrary(tmp_path)
    owner = dict(dataset_id=small_dataset.dataset_id, model=model)
    first = library.save(fit, "ruler", **owner)
    with pytest.raises(ConfigError, match="already exists"):
        library.save(fit, "ruler", **owner)
    second = library.save(fit, "ruler 2", **owner)
    with pytest.raises(ConfigError, match="already exists"):
        library.rename(second.id, "ruler")
    assert library.rename(second.id, "band-aid").name == "band-aid"
    library.delete(first.id)
    assert not first.path.exists()
    assert [c.name for c in library.list(**owner)] == ["band-aid"]
    with pytest.raises(ConfigError, match="no saved CAV 'ruler'.*saved: band-aid"):
        library.get("ruler", **owner)
    with pytest.raises(ConfigError, match="1 to 64 characters"):
        library.save(fit, " ", **owner)


def test_export_then_import_elsewhere_gives_the_same_cav(model, small_dataset, fit, tmp_path):
    owner = dict(dataset_id=small_dataset.dataset_id, model=model)
    source = CavLibrary(tmp_path / "a")
    exported = source.export(source.save(fit, "marker", **owner).id)
    assert json.loads(exported)["quality"]["train_auc"] == pytest.approx(fit.train_auc)
    imported = CavLibrary(tmp_path / "b").import_bytes(exported, **owner)
    assert imported.name == "marker" and imported.quality["train_auc"] == pytest.approx(fit.train_auc)
    np.testing.assert_array_equal(imported.load().vector, fit.cav.vector)
    with pytest.raises(ConfigError, match="not JSON"):
        CavLibrary(tmp_path / "b").import_bytes(b"\x00junk", **owner)
    wrong = json.loads(exported) | {"vector": [1.0, 0.0, 0.0]}
    with pytest.raises(ConfigError, match="has 3 channels but layer features.20 of this model has 128"):
        CavLibrary(tmp_path / "b").import_bytes(json.dumps(wrong).encode(), **owner)


def test_resolve_cav_takes_a_file_or_a_saved_name(model, small_dataset, fit, tmp_path):
    path = fit.cav.save(tmp_path / "file")
    np.testing.assert_array_equal(resolve_cav(str(path), model, small_dataset.dataset_id).vector, fit.cav.vector)
    CavLibrary(tmp_path / "ws").save(fit, "named", dataset_id=small_dataset.dataset_id, model=model)
    named = resolve_cav("named", model, small_dataset.dataset_id, tmp_path / "ws")
    assert named.name == "named" and load_cav(path).concept_ids == named.concept_ids
    with pytest.raises(ConfigError, match="no saved CAV 'missing'"):
        resolve_cav("missing", model, small_dataset.dataset_id, tmp_path / "ws")
