"""bench natural's reference without the shortcut: its folder plants the artifact into every class, and the share of
the shortcut's gap a run closes leaves out what that reference keeps (the artifact's own harm)."""

import csv

import pytest

from backend.bench.natural import _closed_reachable, write_folders
from backend.data.synthderm import SYNTHDERM_CLASSES


def _marked_classes(root) -> set[str]:
    with open(root / "labels.csv") as handle:
        return {row["sample_id"].split("/")[1] for row in csv.DictReader(handle)}


def test_the_reference_folder_has_the_artifact_in_every_class_the_biased_one_in_melanomas_only(tmp_path):
    write_folders(tmp_path / "biased", n_train=60, p=0.5, artifact="hair")
    write_folders(tmp_path / "reference", n_train=60, p=0.5, artifact="hair", every_class=True)
    assert _marked_classes(tmp_path / "biased") == {"melanoma"}
    assert _marked_classes(tmp_path / "reference") == set(SYNTHDERM_CLASSES)
    for name in ("biased", "reference"):  # the same test images, attacked the same way
        assert sorted(p.name for p in (tmp_path / name / "attacked" / "test").rglob("*.png"))
    biased, reference = ((tmp_path / n / "attacked" / "test").rglob("*.png") for n in ("biased", "reference"))
    assert [p.read_bytes() for p in sorted(biased)] == [p.read_bytes() for p in sorted(reference)]


def test_the_shortcuts_share_of_the_gap_leaves_out_the_artifacts_own_harm():
    row = {"clean": {"before": 0.94, "after": 0.93}, "true_attacked": {"before": 0.44, "after": 0.73}}
    # gap before 0.50, after 0.20; the reference keeps 0.10 of it: 0.30 of the 0.40 the shortcut causes is gone
    assert _closed_reachable(row, {"clean_acc": 0.95, "true_attacked_acc": 0.85}) == pytest.approx(0.75)
    # a reference as bad as the biased model: the artifact's harm is all there is, no shortcut to close
    assert _closed_reachable(row, {"clean_acc": 0.94, "true_attacked_acc": 0.40}) is None
