"""The CLI: every command documents itself; info describes the default; bench data prints and writes JSON."""

import argparse
import json

import pytest

from backend.cli import build_parser, main
from tests.conftest import SMALL_SPEC, run_backend


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the parser, as argument prefixes."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


def test_every_command_documents_itself(capsys):
    commands = _commands(build_parser())
    assert {
        ("cav",),
        ("cavs", "import"),
        ("correct",),
        ("runs", "sweep"),
        ("bench", "natural"),
        ("bench", "multi"),
        ("report",),
    } <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        assert done.value.code == 0 and "usage: python -m backend" in capsys.readouterr().out, command


def test_help_from_the_shell():
    done = run_backend("--help", shell=True)
    assert done.returncode == 0 and "usage: python -m backend" in done.stdout and "cavs" in done.stdout


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
    assert (tmp_path / "cav" / "marker.json").exists() and "alignment" in done.stdout

    labels = tmp_path / "labels.csv"
    labels.write_text("sample_id,label\n" + "".join(f"train_{i:05d},{int(i % 3 == 0)}\n" for i in range(60)))
    done = run_backend(
        "cav", "--labels", str(labels), "--kind", "ridge", "--scope", "all", "--random", "0", "--json", str(report)
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    # every other training sample counts as without the concept
    assert (figures["kind"], figures["n_concept"], figures["n_other"]) == ("ridge", 20, 3000 - 20)

    labels.write_text("sample_id,label\ntrain_00001,1\nnot_a_sample,1\ntrain_00002,0\n")
    done = run_backend("cav", "--labels", str(labels))
    assert done.returncode == 2 and "1 labelled samples are not in the dataset" in done.stderr
    labels.write_text("sample_id,label\ntrain_00001,yes\n")
    done = run_backend("cav", "--labels", str(labels))
    assert done.returncode == 2 and "label must be 0 or 1" in done.stderr


def test_a_saved_cav_is_listed_exported_imported_and_corrected_along(tmp_path):
    workspace, other = str(tmp_path / "ws"), str(tmp_path / "other")
    small = ("--dataset", SMALL_SPEC)
    done = run_backend("cav", "--save", "marker", "--random", "0", "--workspace", workspace, *small)
    assert done.returncode == 0 and "saved as 'marker'" in done.stdout, done.stderr
    listed = tmp_path / "list.json"
    assert run_backend("cavs", "list", "--workspace", workspace, "--json", str(listed), *small).returncode == 0
    (saved,) = json.loads(listed.read_text())["cavs"]
    assert (saved["name"], saved["scope"], saved["attacked_class"], saved["pooling"]) == (
        "marker",
        "attacked_class",
        "melanoma",
        "mean",
    )
    exported = tmp_path / "marker.json"
    assert (
        run_backend("cavs", "export", "marker", "--out", str(exported), "--workspace", workspace, *small).returncode
        == 0
    )
    done = run_backend("cavs", "import", str(exported), "--name", "copied", "--workspace", other, *small)
    assert done.returncode == 0 and "saved as 'copied'" in done.stdout, done.stderr
    report = tmp_path / "correct.json"
    done = run_backend(
        "correct",
        "--cav",
        "copied",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--workspace",
        other,
        "--json",
        str(report),
        *small,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(report.read_text())
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert summary["cav"]["name"] == card["training"]["correction"]["cav"]["name"] == "copied"
    assert card["training"]["correction"]["cav"]["vector"] == json.loads(exported.read_text())["vector"]
    done = run_backend("correct", "--cav", "missing", "--out", str(tmp_path / "x"), "--workspace", other, *small)
    assert done.returncode == 2 and "no saved CAV 'missing'" in done.stderr and "copied" in done.stderr
    assert run_backend("cavs", "delete", "copied", "--workspace", other, *small).returncode == 0
    done = run_backend("cavs", "list", "--workspace", other, *small)
    assert "copied" not in done.stdout


def test_also_cav_describes_a_further_concept_or_says_what_is_wrong():
    from backend.cli.common import job_from_args
    from backend.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(
        ["correct", "--out", "x", "--also-cav", "marks.cav.json;lam=1e4;attacked_dataset=folder:/data/a;labels=m.csv"]
    )
    (_, extra) = job_from_args(args, "x").concepts
    assert (extra.cav, extra.lam, extra.attacked_dataset, extra.labels) == (
        "marks.cav.json",
        1e4,
        "folder:/data/a",
        "m.csv",
    )
    for bad, message in (
        ("marks;weight=2", "not one of lam="),
        ("marks;lam=big", "lam must be a number"),
        (";lam=1", "name the CAV"),
    ):
        with pytest.raises(ConfigError, match=message):
            job_from_args(parser.parse_args(["correct", "--out", "x", "--also-cav", bad]), "x")
