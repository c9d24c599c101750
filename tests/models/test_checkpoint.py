"""Checkpoints: round trip with metadata, safe loading, and clear errors for corrupt or mismatched files."""

import json
import pickle

import pytest
import torch

from backend.data import Normalization
from backend.errors import CheckpointError
from backend.models import ModelMeta, build_model, card_path, load_checkpoint, save_checkpoint

CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")


def _meta(**overrides) -> ModelMeta:
    base = dict(
        arch="vgg_compact",
        classes=CLASSES,
        input_size=64,
        normalization=Normalization((0.7, 0.55, 0.47), (0.14, 0.13, 0.12)),
        dataset="synthderm",
        training={"epochs": 1},
        metrics={"test_clean_acc": 0.9},
    )
    return ModelMeta(**(base | overrides))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("vgg_compact", 3).eval()
    path = save_checkpoint(model, _meta(), tmp_path / "model.safetensors")
    return model, path


def test_round_trip_keeps_weights_and_metadata(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    assert loaded.meta.arch == "vgg_compact" and loaded.meta.classes == CLASSES
    assert loaded.meta.normalization == _meta().normalization and loaded.meta.metrics == {"test_clean_acc": 0.9}
    assert loaded.meta.created and loaded.default_layer == "features.20"
    assert len(loaded.sha256) == 64 and not loaded.module.training
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.module(x))
    card = json.loads(card_path(path).read_text())
    assert card["arch"] == "vgg_compact" and card["classes"] == list(CLASSES)
    assert not list(path.parent.glob(".*tmp"))  # no temporary files left


def test_weights_only_torch_file_with_sidecar_metadata(saved, tmp_path):
    model, _ = saved
    pt = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), pt)
    with pytest.raises(CheckpointError, match="carries no metadata"):
        load_checkpoint(pt)
    card_path(pt).write_text(json.dumps(_meta().to_dict()))
    assert load_checkpoint(pt).meta.arch == "vgg_compact"
    bundled = tmp_path / "bundled.pth"
    torch.save({"state_dict": model.state_dict(), "meta": _meta().to_dict()}, bundled)
    assert load_checkpoint(bundled).meta.classes == CLASSES


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": _Exploit(marker)}, handle)
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_corrupt_and_truncated_files(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="unsupported checkpoint type"):
        load_checkpoint(card_path(path))


def test_class_count_mismatch_names_the_layer_and_the_counts(saved, tmp_path):
    model, _ = saved
    two = tmp_path / "two.safetensors"
    save_checkpoint(build_model("vgg_compact", 2), _meta(), two)  # metadata says 3 classes, weights have 2
    with pytest.raises(
        CheckpointError, match=r"classifier\.6\.weight: checkpoint \(2, 128\) vs vgg_compact \(3, 128\)"
    ):
        load_checkpoint(two)


def test_other_architecture_is_named(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_checkpoint(build_model("resnet18", 3), _meta(), path)  # weights of a ResNet, metadata of a VGG
    with pytest.raises(CheckpointError, match="another architecture than 'vgg_compact'"):
        load_checkpoint(path)


def test_expected_arch_and_classes_are_checked(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="is a vgg_compact checkpoint, not resnet18"):
        load_checkpoint(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="predicts classes"):
        load_checkpoint(path, classes=("benign", "malignant"))


def test_non_finite_weights_are_refused(tmp_path):
    model = build_model("vgg_compact", 3)
    with torch.no_grad():
        model.classifier[6].weight[0, 0] = float("nan")
    path = save_checkpoint(model, _meta(), tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(path)


def test_metadata_without_required_fields(saved, tmp_path):
    model, _ = saved
    pt = tmp_path / "partial.pt"
    torch.save({"state_dict": model.state_dict(), "meta": {"arch": "vgg_compact"}}, pt)
    with pytest.raises(CheckpointError, match="needs arch, classes, input_size"):
        load_checkpoint(pt)
