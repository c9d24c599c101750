"""The CLI: every command documents itself; info describes the default; bench data prints and writes JSON."""

import json

import pytest

from tests.conftest import run_backend


@pytest.mark.parametrize("command", [[], ["train"], ["info"], ["cav"], ["bench"], ["bench", "data"], ["bench", "cav"]])
def test_help(command):
    done = run_backend(*command, "--help")
    assert done.returncode == 0 and "usage: python -m backend" in done.stdout


def test_info_describes_the_default_model_and_its_dataset(tmp_path):
    out = tmp_path / "info.json"
    done = run_backend("info", "--json", str(out))
    assert done.returncode == 0, done.stderr
    info = json.loads(out.read_text())
    assert info["model"]["arch"] == "vgg_compact" and info["model"]["default_layer"] == "features.20"
    assert info["dataset"]["planting"]["artifact"] == "skin_marker"


def test_info_on_a_broken_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    done = run_backend("info", "--checkpoint", str(bad))
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_bench_data_writes_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    done = run_backend("bench", "data", "--images", "200", "--json", str(out))
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["images"] == 200 and figures["seconds"] > 0 and set(figures["artifact_ms_per_image"]) >= {"lsb"}
    assert "ms each" in done.stdout


def test_cav_from_planted_labels_and_from_a_labels_file(tmp_path):
    out, report = tmp_path / "cav" / "marker", tmp_path / "cav.json"
    done = run_backend("cav", "--out", str(out), "--json", str(report), "--random", "5")
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    assert figures["kind"] == "pattern" and figures["alignment"] >= 0.8 and figures["held_out_auc"] >= 0.9
    assert (tmp_path / "cav" / "marker.npy").exists() and "alignment" in done.stdout

    labels = tmp_path / "labels.csv"
    labels.write_text("sample_id,label\n" + "".join(f"train_{i:05d},{int(i % 3 == 0)}\n" for i in range(60)))
    done = run_backend("cav", "--labels", str(labels), "--kind", "ridge", "--random", "0", "--json", str(report))
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    assert (figures["kind"], figures["n_concept"], figures["n_other"]) == ("ridge", 20, 40)

    labels.write_text("sample_id,label\ntrain_00001,1\nnot_a_sample,1\ntrain_00002,0\n")
    done = run_backend("cav", "--labels", str(labels))
    assert done.returncode == 2 and "1 labelled samples are not in the train split" in done.stderr
    labels.write_text("sample_id,label\ntrain_00001,yes\n")
    done = run_backend("cav", "--labels", str(labels))
    assert done.returncode == 2 and "label must be 0 or 1" in done.stderr
