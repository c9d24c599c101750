"""Attacked test images for data whose artifact nobody planted: transplanted from annotated training images or the
user's own attacked copy, paired by sample id; and the figures an evaluation reports on them."""

import csv

import numpy as np
import pytest
from PIL import Image

from backend.bench.natural import write_folders
from backend.concepts import fit_concept, read_concept_labels
from backend.data import Donor, TransplantAttack, open_dataset
from backend.errors import ConfigError
from backend.evaluation import AttackConfig, attacked_set, evaluate
from backend.models import LoadedModel, ModelMeta, build_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A small image folder with stickers in half of the melanoma training images, and its attacked test copy."""
    root = tmp_path_factory.mktemp("natural")
    write_folders(root, n_train=80, p=0.5)
    return root


@pytest.fixture(scope="module")
def dataset(folder, workspace):
    return open_dataset(f"folder:{folder / 'images'}?size=64", workspace)


@pytest.fixture(scope="module")
def model(dataset):
    import torch

    torch.manual_seed(0)
    meta = ModelMeta(arch="vgg_compact", classes=dataset.classes, input_size=64)
    return LoadedModel(module=build_model("vgg_compact", 3).eval(), meta=meta)


@pytest.fixture(scope="module")
def labels(folder):
    return read_concept_labels(folder / "labels.csv")


def _donor(name: str, value: int, where: slice) -> Donor:
    image = np.full((8, 8, 3), value, dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[where] = True
    return Donor(name, image, mask)


def test_a_transplant_pastes_the_donors_pixels_under_its_mask_and_nothing_else():
    donors = [_donor("a", 10, np.s_[:2, :2]), _donor("b", 20, np.s_[6:, 6:]), _donor("c", 30, np.s_[3:5, :])]
    attack = TransplantAttack(donors, seed=1)
    target = np.full((8, 8, 3), 200, dtype=np.uint8)
    for sid in ("x", "y", "a"):
        out, mask = attack.apply(sid, target)
        donor = attack.donor_for(sid)
        assert donor.sample_id != sid
        np.testing.assert_array_equal(mask, donor.mask)
        np.testing.assert_array_equal(out[mask], donor.image[mask])
        np.testing.assert_array_equal(out[~mask], target[~mask])
    assert TransplantAttack(donors, seed=1).donor_for("x") == attack.donor_for("x")  # seeded
    rounds = {TransplantAttack(donors, seed=1, round=r).donor_for("y").sample_id for r in range(8)}
    assert len(rounds) > 1 and attack.key != TransplantAttack(donors, seed=1, round=1).key
    with pytest.raises(ConfigError, match="non-empty artifact mask"):
        TransplantAttack([_donor("d", 0, np.s_[0:0])])


def test_the_users_attacked_copy_is_paired_by_sample_id(model, dataset, folder, tmp_path):
    attacked = attacked_set(model, dataset, None, AttackConfig(attacked_dataset=f"folder:{folder / 'attacked'}"))
    test = dataset.split("test")
    assert attacked.source == "supplied" and attacked.detail["paired"] == len(test) == len(attacked.indices)
    view = attacked.views[0]
    image, mask = view.image_and_mask(0)
    assert 0.01 < mask.mean() < 0.25  # the sticker, found as the pixels that differ
    assert (np.abs(image.astype(int) - test.image(0).astype(int)).max(axis=2) > 8).sum() == mask.sum()
    (tmp_path / "melanoma").mkdir()
    Image.fromarray(image).save(tmp_path / "melanoma" / "renamed.png")
    with pytest.raises(ConfigError, match="same file names"):
        attacked_set(model, dataset, None, AttackConfig(attacked_dataset=f"folder:{tmp_path}"))


def test_transplanted_figures_record_where_they_come_from(model, dataset, labels, workspace):
    cav = fit_concept(model, dataset, labels, n_random=0, workspace=workspace).cav
    donors = set(labels)
    result = evaluate(model, dataset, cav, attack=AttackConfig(transplant_rounds=2), donor_ids=donors)
    n_test = len(dataset.split("test"))
    assert result.attack_source == "transplanted" and result.n_attacked == 2 * n_test
    assert set(result.attack["donor_ids"]) <= donors and result.attack["rounds"] == 2
    assert all(len(d) == 2 and set(d) <= donors for d in result.attack["pairs"].values())
    assert 0 <= result.r_bias <= 1 and result.tcav_sensitivity is not None and result.attacked_class == "melanoma"
    assert sum(map(sum, result.attacked_confusion)) == 2 * n_test and sum(map(sum, result.confusion)) == n_test
    assert set(result.attacked_acc_per_class) == set(dataset.classes)


def test_auto_takes_planted_then_supplied_then_transplanted(model, dataset, folder, labels, small_dataset, workspace):
    cav = fit_concept(model, dataset, labels, n_random=0, workspace=workspace).cav
    supplied = AttackConfig(attacked_dataset=f"folder:{folder / 'attacked'}")
    assert attacked_set(model, dataset, cav, supplied, donor_ids=labels).source == "supplied"
    assert attacked_set(model, dataset, cav, AttackConfig(), donor_ids=labels).source == "transplanted"
    assert attacked_set(model, dataset, cav, AttackConfig()) is None  # nothing annotated, nothing supplied
    assert attacked_set(model, dataset, cav, AttackConfig(attack="none"), donor_ids=labels) is None
    with pytest.raises(ConfigError, match="plants no artifact"):
        attacked_set(model, dataset, cav, AttackConfig(attack="planted"))
    planted_model = LoadedModel(module=model.module, meta=ModelMeta("vgg_compact", small_dataset.classes, 64))
    assert attacked_set(planted_model, small_dataset, None, supplied).source == "planted"


def test_annotated_test_samples_give_accuracy_with_and_without_the_artifact(model, dataset, folder, labels, workspace):
    test = dataset.split("test")
    marked = set(test.sample_ids[::4])
    cav = fit_concept(model, dataset, labels, n_random=0, workspace=workspace).cav
    result = evaluate(model, dataset, cav, artifact_ids=marked, attack=AttackConfig(attack="none"))
    predicted_right = result.with_artifact_acc * len(marked) + result.without_artifact_acc * (len(test) - len(marked))
    assert result.n_annotated == len(marked) and predicted_right == pytest.approx(result.clean_acc * len(test))
    assert result.annotated_tcav_score is not None and result.attacked_acc is None


def test_the_annotation_file_lists_the_stickered_training_images(folder, dataset):
    with open(folder / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    train = dataset.split("train")
    assert rows and all(r["label"] == "1" and r["sample_id"] in train.sample_ids for r in rows)
    assert all("/melanoma/" in r["sample_id"] for r in rows)
