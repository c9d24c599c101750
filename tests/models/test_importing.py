"""Models trained elsewhere: a torchvision ResNet-18 state dict, a DataParallel checkpoint and a Lightning-style
.ckpt each import into an ordinary checkpoint with a card that predicts the same logits as the source module, and
opens in the dashboard; a mismatch names the keys."""

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest

from backend.errors import CheckpointError
from backend.models import IMAGENET_NORMALIZATION, MissingCardError, import_checkpoint, load_checkpoint
from tests.conftest import ROOT, run_backend

CLASSES = ("benign", "malignant")


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a wrong load shows
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return module


def _files(source, folder):
    state = source.state_dict()
    files = {
        "plain.pth": state,
        "dataparallel.pt": {f"module.{k}": v for k, v in state.items()},
        "lightning.ckpt": {
            "epoch": 9,
            "global_step": 1000,
            "pytorch-lightning_version": "2.1.0",
            "hyper_parameters": {"lr": 0.0001, "optimizer": "sgd"},
            "state_dict": {f"model.{k}": v for k, v in state.items()} | {"loss.weight": torch.ones(2)},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.0001}]}],
        },
    }
    for name, payload in files.items():
        torch.save(payload, folder / name)
    return list(files)


def test_each_layout_imports_and_predicts_like_the_source(source, tmp_path):
    x = torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        expected = source(IMAGENET_NORMALIZATION.apply(x))
    for name in _files(source, tmp_path):
        with pytest.raises(MissingCardError, match="import it"):
            load_checkpoint(tmp_path / name)
        out = tmp_path / f"{name}.safetensors"
        imported = import_checkpoint(tmp_path / name, arch="resnet18", classes=CLASSES, out=out)
        loaded = load_checkpoint(out)
        assert loaded.meta.classes == CLASSES and loaded.meta.input_size == 224
        with torch.no_grad():
            got = loaded.module(loaded.meta.normalization.apply(x))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        record = imported.meta.training["imported"]
        assert record["prefix"] == {"plain.pth": "", "dataparallel.pt": "module.", "lightning.ckpt": "model."}[name]
        assert record["set_aside"] == (["loss.weight"] if name == "lightning.ckpt" else [])


def test_a_mismatch_names_the_keys_and_shapes(source, tmp_path):
    torch.save(source.state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="unexpected.*vgg16"):
        import_checkpoint(tmp_path / "resnet.pth", arch="vgg16", classes=CLASSES, out=tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match=r"fc.weight: checkpoint \(2, 512\) vs resnet18 \(3, 512\)"):
        import_checkpoint(
            tmp_path / "resnet.pth", arch="resnet18", classes=("a", "b", "c"), out=tmp_path / "y.safetensors"
        )
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_the_cli_imports_and_the_dashboard_opens_it(source, tmp_path, workspace):
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "dp.pt")
    out = workspace / "models" / "imported-resnet.safetensors"
    done = run_backend(
        "import-checkpoint",
        str(tmp_path / "dp.pt"),
        "--arch",
        "resnet18",
        "--classes",
        ",".join(CLASSES),
        "--out",
        str(out),
    )
    assert done.returncode == 0 and "prefix 'module.' removed" in done.stdout, done.stderr
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.session_state["checkpoint"] = str(out)
    at.session_state["dataset_spec"] = "synthderm?artifact=none&classes=nevus&n_train=30&n_val=6&n_test=6"
    at.run(timeout=300)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Architecture"] == "resnet18" and metrics["Classes"] == "2"
    assert any("predicts" in e.value and "benign" in e.value for e in at.error)  # classes differ from the dataset's


def test_setup_offers_the_import_for_a_checkpoint_without_a_card(source, workspace):
    path = workspace / "models" / "from-elsewhere.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save({f"model.{k}": v for k, v in source.state_dict().items()}, path)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.session_state["checkpoint"] = str(path)
    at.run(timeout=300)
    assert any("no model card" in w.value for w in at.warning) and not at.exception
    assert at.text_input(key="dataset_spec") is not None  # the dataset field stays editable
    at.text_input[2].set_value("benign, malignant")  # checkpoint, dataset, then the form's classes
    next(b for b in at.button if b.label == "Import checkpoint").click()
    at.run(timeout=300)
    assert at.session_state["checkpoint"] == str(workspace / "models" / "from-elsewhere.safetensors")
    assert {m.label: m.value for m in at.metric}["Architecture"] == "resnet18"
    assert load_checkpoint(at.session_state["checkpoint"]).meta.training["imported"]["prefix"] == "model."
