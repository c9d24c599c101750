"""The audit report of a real run (one point of a sweep, on the small spec, in its own workspace): one self-contained
page with the run's figures, CAV, images and charts; missing optional parts leave a sentence; bad runs are errors;
the CLI writes the file."""

import base64
import re

import pytest

from backend.cli import main
from backend.correction import LoopConfig
from backend.errors import ConfigError
from backend.runs import CorrectionJob, LocalExecutor, load_examples, submit_sweep
from backend.runs.reporting.report import build_report
from tests.conftest import SMALL_SPEC

_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run that succeeded as the single point of a sweep, and its store."""
    executor = LocalExecutor(tmp_path_factory.mktemp("report-workspace"))
    job = CorrectionJob(out="", dataset=SMALL_SPEC, loop=LoopConfig(epochs=2, device="cpu"))
    _, (run_id,) = submit_sweep(executor, job, [1e5])
    record = executor.wait([run_id], timeout=300)[0]
    assert record.status == "succeeded", record.error
    return executor.store, record


def test_the_report_is_one_self_contained_page_with_the_runs_figures(finished):
    store, record = finished
    html = build_report(store, record.id)
    assert html.startswith("<!DOCTYPE html>") and html.count("<html") == 1 and html.rstrip().endswith("</html>")
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "url(" not in html and "@import" not in html  # nothing fetched by the stylesheet either
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]*)"', html))
    before, after, cav = record.result["before"], record.result["after"], record.result["cav"]
    for figures in (before, after):
        assert f"{figures['clean_acc']:.1%}" in html and f"{figures['attacked_acc']:.1%}" in html
        assert f"{figures['tcav_sensitivity']:.3f}" in html and f"{figures['r_bias']:.3f}" in html
    assert f"<b>{cav['kind']}</b>" in html and f"<code>{cav['layer']}</code>" in html
    assert f"{cav['held_out_auc']:.3f}" in html  # the CAV's quality as the run stored it
    pngs = _PNG.findall(html)
    kept = len(load_examples(record.outputs["examples"])["images"])
    assert kept and len(pngs) >= 3 * kept  # each kept example: the image, before and after
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert "before → " in html and "after → " in html
    assert html.count("<svg") >= 2  # the loss curves and the sweep's trade-off
    assert record.sweep_id in html and "(this run)" in html
    assert "@media print" in html and "break-inside: avoid" in html


def test_missing_optional_parts_leave_a_sentence(finished):
    store, record = finished
    outputs = {k: v for k, v in record.outputs.items() if k != "examples"}
    copy = store.create(record.config, name="without examples")
    store.finish(copy, "succeeded", result=record.result, outputs=outputs)
    html = build_report(store, copy)
    assert "kept no example images" in html and "not part of a sweep" in html
    assert "before → " not in html and f"{record.result['after']['attacked_acc']:.1%}" in html


def test_a_run_that_did_not_succeed_or_lost_its_files_is_an_error(finished, tmp_path):
    store, record = finished
    queued = store.create(record.config)
    with pytest.raises(ConfigError, match="is queued: only a succeeded run"):
        build_report(store, queued)
    moved = store.create(record.config)
    store.finish(moved, "succeeded", result=record.result, outputs=record.outputs | {"card": str(tmp_path / "gone")})
    with pytest.raises(ConfigError, match="model card .* is missing"):
        build_report(store, moved)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        build_report(store, "nope")


def test_the_cli_writes_the_report_and_an_unknown_run_is_exit_code_2(finished, tmp_path, monkeypatch, capsys):
    store, record = finished
    monkeypatch.chdir(tmp_path)
    assert main(["report", record.id, "--workspace", str(store.workspace)]) == 0
    written = tmp_path / f"{record.id}-report.html"
    assert f"wrote {written.name}" in capsys.readouterr().out
    assert "<!DOCTYPE html>" in written.read_text() and _PNG.search(written.read_text())
    assert main(["report", "no-such-run", "--workspace", str(store.workspace), "--out", "x.html"]) == 2
    assert "error: no run 'no-such-run'" in capsys.readouterr().err and not (tmp_path / "x.html").exists()


def test_a_run_of_several_concepts_has_a_row_per_concept(finished):
    store, record = finished
    assert "Each concept" not in build_report(store, record.id)  # one concept: its figures are the run's
    (own,) = record.result["concepts"]
    second = own | {"concept": "band-aid", "attacked_class": "nevus", "lam": 1e4}
    copy = store.create(record.config, name="two concepts")
    store.finish(copy, "succeeded", result=record.result | {"concepts": [own, second]}, outputs=record.outputs)
    html = build_report(store, copy)
    section = html[html.index("Each concept") :]
    assert "band-aid" in section and "nevus" in section and own["concept"] in section
    assert f"{own['after']['attacked_acc']:.1%}" in section
