"""The catalogue of bad input: each one, fed to the backend API the app and the CLI call, ends in a ClarcError with
a message that names the problem, and the workspace's saved state (annotations, runs, exports) is exactly as before.
The detailed behaviour of each lives in its module's tests; this file proves the "nothing lost" half for all."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from backend.concepts import cached_activations, fit_concept, planted_labels, read_concept_labels
from backend.concepts import write_concept_labels as concept_labels_file
from backend.correction import ConceptTarget, LoopConfig, RRClarcConfig, correct
from backend.data import check_allowed_spec, open_dataset, read_image
from backend.defaults import DEFAULT_CHECKPOINT
from backend.errors import ClarcError
from backend.models import build_model, load_checkpoint, save_checkpoint
from backend.runs import CorrectionJob, RunStore
from backend.storage import AnnotationStore, store_checkpoint_upload
from tests.conftest import SMALL_SPEC

DATASET = "bad-input-test"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workspace with work in it: annotations of two concepts, a finished run, an exported checkpoint."""
    ws = tmp_path_factory.mktemp("saved")
    store = AnnotationStore(ws)
    store.set_labels(DATASET, "skin marker", {f"train_{i:05d}": i % 2 for i in range(40)})
    store.set_labels(DATASET, "ruler", {"train_00001": 1, "train_00002": 0})
    runs = RunStore(ws)
    run_id = runs.create({"method": "rrclarc"}, name="earlier", sweep_id=None, device="cpu", engine="local")
    runs.add_metrics(run_id, 1, {"loss": 0.5}, progress=1.0)
    runs.finish(run_id, "succeeded", outputs={"checkpoint": "model.safetensors"}, result={"after": {"clean_acc": 0.9}})
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    save_checkpoint(model.module, model.meta, ws / "exports" / "model.safetensors")
    return ws


def _snapshot(ws) -> dict:
    """Everything saved: annotation export, run records with history, and every file outside the caches."""
    files = {
        str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ws.rglob("*"))
        if p.is_file() and "cache" not in p.parts and not p.name.startswith("studio.db")
    }
    runs = [r.to_dict() | {"heartbeat": None} for r in RunStore(ws).list()]
    return {"annotations": AnnotationStore(ws).export_json(DATASET), "runs": runs, "files": files}


def _png_bytes(mode="RGB", size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Bad files on disk, shared by the cases (none of them writes there)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "truncated.png").write_bytes(_png_bytes()[:60])
    (tmp / "text.png").write_text("not an image")
    (tmp / "empty_folder").mkdir()
    Image.new("1", (20_000, 20_000)).save(tmp / "bomb.png")
    other = build_model("resnet18", 3)
    torch.save(other.state_dict(), tmp / "resnet.pt")
    (tmp / "resnet.json").write_text(json.dumps({"arch": "vgg_compact", "classes": ["a", "b", "c"], "input_size": 64}))
    with open(tmp / "evil.pt", "wb") as handle:
        pickle.dump({"state_dict": _Exploit(tmp / "pwned")}, handle)
    (tmp / "truncated.safetensors").write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:5000])
    (tmp / "labels.csv").write_text("sample_id,label\ntrain_00000,yes-ish\n")
    return tmp


@pytest.fixture(scope="module")
def small(saved):
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    dataset = open_dataset(SMALL_SPEC, saved)
    return model, dataset


CASES = {
    "truncated image": (lambda t, m, d: read_image(t / "truncated.png", 64), "cannot read image"),
    "text file named .png": (lambda t, m, d: read_image(t / "text.png", 64), "cannot read image"),
    "decompression bomb (20000x20000)": (lambda t, m, d: read_image(t / "bomb.png", 64), "cannot read image"),
    "missing dataset folder": (lambda t, m, d: open_dataset(f"folder:{t / 'nowhere'}"), "does not exist"),
    "empty dataset folder": (lambda t, m, d: open_dataset(f"folder:{t / 'empty_folder'}"), "no images found"),
    "unknown artifact in a spec": (lambda t, m, d: open_dataset("synthderm?artifact=sticker"), "unknown artifact"),
    "dataset folder outside the allowed roots": (lambda t, m, d: check_allowed_spec("folder:/etc"), "outside the"),
    "checkpoint of another architecture": (lambda t, m, d: load_checkpoint(t / "resnet.pt"), "vgg_compact"),
    "checkpoint of another class count": (
        lambda t, m, d: load_checkpoint(DEFAULT_CHECKPOINT, classes=("benign", "malignant")),
        "predicts classes",
    ),
    "malicious pickle": (lambda t, m, d: load_checkpoint(t / "evil.pt"), "not a weights-only checkpoint"),
    "truncated safetensors": (lambda t, m, d: load_checkpoint(t / "truncated.safetensors"), "truncated or corrupt"),
    "upload that is not a checkpoint": (
        lambda t, m, d: store_checkpoint_upload(b"<html>", t),
        "neither a safetensors file nor a torch checkpoint",
    ),
    "layer that does not exist": (
        lambda t, m, d: cached_activations(m, d.split("train"), d.dataset_id, "features.99", workspace=t),
        "features.99",
    ),
    "concept labels of one kind only": (  # every sample shows the concept: nothing to contrast it with
        lambda t, m, d: fit_concept(m, d, dict.fromkeys(d.split("train").sample_ids, 1), workspace=t),
        "2 without",
    ),
    "concept labels of unknown samples": (
        lambda t, m, d: fit_concept(m, d, {"ISIC_9999999": 1, "train_00000": 0}, workspace=t),
        "not in the dataset",
    ),
    "labels CSV with a bad label": (lambda t, m, d: read_concept_labels(t / "labels.csv"), "label must be 0 or 1"),
    "annotation label other than 0/1": (
        lambda t, m, d: AnnotationStore(t).set_labels(DATASET, "skin marker", {"train_00000": 2}),
        "train_00000",
    ),
    "empty concept name": (lambda t, m, d: AnnotationStore(t).set_labels(DATASET, "  ", {"train_00000": 1}), "concept"),
    "annotation file that is not JSON": (
        lambda t, m, d: AnnotationStore(t).import_text(DATASET, "{oops", "json", known_ids=["train_00000"]),
        "JSON",
    ),
    "annotation CSV without a header": (
        lambda t, m, d: AnnotationStore(t).import_text(DATASET, "train_00000;1\n", "csv", known_ids=["train_00000"]),
        "sample_id",
    ),
    "empty label set for a run": (lambda t, m, d: concept_labels_file({}, t), "no concept labels"),
    "unknown correction method": (lambda t, m, d: CorrectionJob(out="x", method="magic"), "unknown correction method"),
    "zero epochs": (lambda t, m, d: LoopConfig(epochs=0), "epochs"),
    "loss becomes NaN": (
        lambda t, m, d: correct(
            m,
            d,
            [ConceptTarget(fit_concept(m, d, planted_labels(d), n_random=0, workspace=t).cav)],
            "rrclarc",
            RRClarcConfig(lam=1e38),
            LoopConfig(epochs=2, lr=1e30),
            workspace=t,
        ),
        "diverged",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_a_clear_error_and_loses_nothing(name, saved, small, bad_files, tmp_path):
    action, message = CASES[name]
    before = _snapshot(saved)
    model, dataset = small
    if "annotation" in name or "concept name" in name:
        target = saved  # written to the store that holds the saved work
    elif name in ("loss becomes NaN", "layer that does not exist", "concept labels of unknown samples"):
        target = tmp_path  # a workspace for caches
    else:
        target = bad_files
    with pytest.raises(ClarcError) as caught:
        action(target, model, dataset)
    assert message.lower() in str(caught.value).lower(), str(caught.value)
    assert _snapshot(saved) == before
    assert not (bad_files / "pwned").exists()
    assert np.isfinite([p.detach().sum().item() for p in model.module.parameters()]).all()
