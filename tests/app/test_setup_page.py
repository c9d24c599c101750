"""The dashboard's setup page on the embedded default, through streamlit's AppTest (a real script run)."""

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_setup_page_shows_the_default_model_and_its_shortcut():
    at = _run(AppTest.from_file(APP))
    assert at.text_input(key="checkpoint").value.endswith("default_model.safetensors")
    assert at.text_input(key="dataset_spec").value.startswith("synthderm?artifact=skin_marker")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Architecture"] == "vgg_compact" and metrics["Classes"] == "3"
    clean = float(metrics["Clean"].rstrip("%")) / 100
    attacked_label = next(label for label in metrics if label.startswith("Attacked"))
    attacked = float(metrics[attacked_label].rstrip("%")) / 100
    assert clean >= 0.90 and attacked <= clean - 0.20
    assert not at.error


def test_bad_checkpoint_path_shows_a_clear_error(workspace):
    at = AppTest.from_file(APP)
    at.session_state["checkpoint"] = str(workspace / "nowhere" / "model.safetensors")
    _run(at)
    assert any("checkpoint not found" in e.value for e in at.error)


def test_paths_outside_the_allowed_roots_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"x")
    for key, value in (
        ("checkpoint", "/etc/passwd"),
        ("checkpoint", "assets/../../../../etc/passwd"),
        ("checkpoint", str(outside / "model.safetensors")),
        ("dataset_spec", "folder:/etc"),
        ("dataset_spec", f"isic:{outside}"),
    ):
        at = AppTest.from_file(APP)
        at.session_state[key] = value
        _run(at)
        assert any("outside the folders this dashboard may read" in e.value for e in at.error), (key, value)
        shown = {m.label for m in at.metric}  # nothing of it was opened or shown
        assert not shown if key == "checkpoint" else "Clean" not in shown and "Architecture" in shown


def test_bad_dataset_spec_shows_a_clear_error():
    at = AppTest.from_file(APP)
    at.session_state["dataset_spec"] = "synthderm?artifact=sticker"
    _run(at)
    assert any("unknown artifact 'sticker'" in e.value for e in at.error)


def test_dataset_with_other_classes_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("CLARC_DATA_ROOTS", str(tmp_path))
    for name in ("benign", "malignant"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 40), (200, 150, 120)).save(tmp_path / name / "a.png")
    at = AppTest.from_file(APP)
    at.session_state["dataset_spec"] = f"folder:{tmp_path}"
    _run(at)
    assert any("The model predicts" in e.value for e in at.error)
