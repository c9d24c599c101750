"""Every dashboard page through streamlit's AppTest (real script runs, real backend, the session's workspace):
each renders on the embedded default, and annotating, fitting and launching change the backend state."""

from __future__ import annotations

import time

import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint
from backend.runs import FINAL_STATUSES, RunStore
from backend.storage import AnnotationStore
from tests.conftest import ROOT, SMALL_SPEC

APP = str(ROOT / "app" / "main.py")
CONCEPT = "skin marker"


def _run(at: AppTest) -> AppTest:
    at.run(timeout=300)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _app(spec: str | None = SMALL_SPEC, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    if spec:
        at.session_state["dataset_spec"] = spec
    _run(at)
    if page:
        at.switch_page(page)
        _run(at)
    return at


def _click(at: AppTest, button) -> AppTest:
    button.click()
    return _run(at)


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _labels(workspace, spec: str = SMALL_SPEC) -> dict[str, int]:
    return AnnotationStore(workspace).labels(open_dataset(spec, workspace).dataset_id, CONCEPT)


def _clear(workspace, spec: str = SMALL_SPEC) -> None:
    store = AnnotationStore(workspace)
    dataset_id = open_dataset(spec, workspace).dataset_id
    for concept in store.concepts(dataset_id):
        store.delete_concept(dataset_id, concept.name)


def _annotate(at: AppTest, n_artifact: int, n_clean: int) -> None:
    """Tick tiles of the grid and bulk-label them, the way a user does."""
    for value, n in (("Selected → artifact", n_artifact), ("Selected → clean", n_clean)):
        boxes = [c for c in at.checkbox if c.label == "select" and not c.disabled]
        labelled = set(_labels_shown(at))
        todo = [c for c in boxes if c.key.removeprefix("explore_pick_") not in labelled][:n]
        for box in todo:
            box.check()
        _run(at)
        _click(at, _button(at, value))


def _labels_shown(at: AppTest) -> list[str]:
    """Sample ids whose artifact or clean button is disabled (already carries that label)."""
    return [
        b.key.removeprefix(f"explore_{b.label}_") for b in at.button if b.label in ("artifact", "clean") and b.disabled
    ]


def test_every_page_renders_on_the_embedded_default():
    at = _app(spec=None)
    assert at.title[0].value == "ClArC Studio"
    assert at.selectbox(key="layer").value == "features.20"
    at.switch_page("explore.py")
    _run(at)
    assert len([c for c in at.checkbox if c.label == "select"]) == 24
    assert at.get("pagination")[0].num_pages == 125  # 3000 training images, 24 a page
    assert {"Select page", "Selected → artifact", "Selected → clean", "Undo"} <= {b.label for b in at.button}
    at.switch_page("concepts.py")
    _run(at)
    assert at.selectbox(key="concept") is not None
    at.switch_page("correct.py")
    _run(at)
    assert at.selectbox(key="correct_method").value == "rrclarc"
    assert at.selectbox(key="correct_label_source").value.startswith("planted artifact")
    assert at.number_input(key="correct_opt_rrclarc_lam").value == 1e5
    assert {"Launch run", "Launch sweep"} <= {b.label for b in at.button}
    at.switch_page("results.py")
    _run(at)


def test_grid_filters_sorting_and_view_modes(workspace):
    at = _app(page="explore.py")
    assert at.caption[0].value.startswith("120 of 120 training images match")
    at.multiselect(key="explore_filter_true").set_value(["melanoma"])
    _run(at)
    n_melanoma = int(at.caption[0].value.split()[0])
    assert 0 < n_melanoma < 120
    at.toggle(key="explore_filter_wrong").set_value(True)
    _run(at)
    assert int(at.caption[0].value.split()[0]) < n_melanoma
    at.toggle(key="explore_filter_wrong").set_value(False)
    at.multiselect(key="explore_filter_true").set_value([])
    for sort in ("confidence, lowest first", "heatmap outlier score, highest first", "CAV score, highest first"):
        at.selectbox(key="explore_sort").set_value(sort)
        _run(at)
    assert any("Fit a CAV" in i.value for i in at.info)  # no CAV yet: says so and keeps sample order
    for look in ("heatmap", "overlay"):
        at.segmented_control(key="explore_look").set_value(look)
        _run(at)
        assert len([c for c in at.checkbox if c.label == "select"]) == 24


def test_annotating_persists_and_undo_reverts(workspace):
    _clear(workspace)
    at = _app(page="explore.py")
    _annotate(at, n_artifact=6, n_clean=5)
    labels = _labels(workspace)
    assert sorted(labels.values()) == [0] * 5 + [1] * 6
    boxes = [c.key.removeprefix("explore_pick_") for c in at.checkbox if c.label == "select"]
    sample = next(sid for sid in boxes if sid not in labels)
    _click(at, next(b for b in at.button if b.key == f"explore_artifact_{sample}"))
    assert _labels(workspace)[sample] == 1
    _click(at, _button(at, "Undo"))
    assert sample not in _labels(workspace) and len(_labels(workspace)) == 11
    restarted = _app(page="explore.py")  # a new session: what was saved is shown again
    assert set(_labels_shown(restarted)) == set(_labels(workspace))
    table = restarted.dataframe[-1].value
    assert table.set_index("concept").loc[CONCEPT].tolist() == [6, 5]


def test_import_and_export_of_annotations(workspace):
    _clear(workspace)
    at = _app(page="explore.py")
    at.segmented_control(key="explore_mode").set_value("Import / export")
    _run(at)
    ids = open_dataset(SMALL_SPEC, workspace).split("train").sample_ids
    text = f"sample_id,label\n{ids[0]},1\n{ids[1]},clean\nnot_a_sample,1\n{ids[2]},maybe\n{ids[0]},0\n"
    at.file_uploader(key="explore_annotation_upload").set_value(("labels.csv", text.encode(), "text/csv"))
    _run(at)
    _click(at, _button(at, "Import"))
    report = (at.success or at.warning)[0].value
    assert "imported 2" in report and "unknown" in report and "duplicate" in report
    assert _labels(workspace) == {ids[0]: 1, ids[1]: 0}
    at.file_uploader(key="explore_annotation_upload").set_value(("labels.json", b"{not json", "application/json"))
    _run(at)
    _click(at, _button(at, "Import"))
    assert at.error and "Nothing imported" in at.error[0].value
    assert _labels(workspace) == {ids[0]: 1, ids[1]: 0}


def test_fitting_a_cav_and_confirming_suggestions(workspace):
    _clear(workspace)
    view = open_dataset(SMALL_SPEC, workspace).split("train")
    planted = {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)}
    store = AnnotationStore(workspace)
    dataset_id = open_dataset(SMALL_SPEC, workspace).dataset_id
    store.set_labels(dataset_id, CONCEPT, dict(list(planted.items())[:80]))
    at = _app(page="concepts.py")
    _click(at, _button(at, "Fit CAV"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Kind"] == "pattern" and float(metrics["Separability (AUC)"]) > 0.9
    assert float(metrics["Alignment with the artifact"]) > 0.5
    assert at.success and "beats" in at.success[0].value  # significant against random CAVs
    assert f"Held-out AUC {metrics['Held-out AUC']} beats" in at.success[0].value  # one held-out AUC, not two
    assert 80 <= int(metrics["Coverage of the artifact"].rstrip("%")) <= 100  # the planted marker: along the CAV
    assert any("at every position" in c.value and "planted training images" in c.value for c in at.caption)
    # 100 random CAVs: p is no longer capped at 1/21 = 0.048
    assert float(metrics["p against random CAVs"].lstrip("<≤ ")) < 0.045
    suggested = [b for b in at.button if b.key and b.key.startswith("concepts_suggest_artifact_")]
    assert len(suggested) == 12
    sample = suggested[0].key.removeprefix("concepts_suggest_artifact_")
    assert sample not in store.labels(dataset_id, CONCEPT)
    _click(at, suggested[0])
    assert store.labels(dataset_id, CONCEPT)[sample] == 1
    assert any("changed since this fit" in i.value for i in at.info)
    at.switch_page("explore.py")
    _run(at)
    at.selectbox(key="explore_sort").set_value("CAV score, highest first")
    _run(at)
    assert not any("Fit a CAV" in i.value for i in at.info)


def test_without_a_planted_artifact_the_held_out_auc_is_on_held_out_annotations(workspace):
    spec = SMALL_SPEC + "&artifact=none"
    view = open_dataset(SMALL_SPEC, workspace).split("train")  # the same images, ids and (here meaningless) labels
    planted = {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)}
    AnnotationStore(workspace).set_labels(open_dataset(spec, workspace).dataset_id, CONCEPT, planted)
    at = _app(spec=spec, page="concepts.py")
    _click(at, _button(at, "Fit CAV"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Held-out AUC"] != "—" and metrics["Alignment with the artifact"] == "—"
    banner = (at.success or at.warning)[0].value
    assert metrics["Held-out AUC"] in banner  # the metric and the banner say the same


def test_a_cav_that_covers_little_of_the_artifact_says_what_that_leaves(workspace):
    _planted_annotations(workspace)
    at = _app()
    at.selectbox(key="layer").set_value("features.6")  # early: the marker's change spreads over many directions
    _run(at)
    at.switch_page("concepts.py")
    _run(at)
    _click(at, _button(at, "Fit CAV"))
    warning = next(w.value for w in at.warning if "lies along the CAV" in w.value)
    assert "at every position" in warning and "rest of the shortcut" in warning and "rank=3" in warning


def test_too_few_annotations_explain_what_is_missing(workspace):
    _clear(workspace)
    ids = open_dataset(SMALL_SPEC, workspace).split("train").sample_ids
    AnnotationStore(workspace).set_labels(open_dataset(SMALL_SPEC, workspace).dataset_id, CONCEPT, {ids[0]: 1})
    at = _app(page="concepts.py")
    assert any("at least 2 training samples labelled as showing the concept" in i.value for i in at.info)
    assert not any(b.label == "Fit CAV" for b in at.button)


def test_launching_a_run_then_results_and_export(workspace):
    _planted_annotations(workspace)
    at = _app(page="correct.py")
    assert at.selectbox(key="correct_label_source").value.startswith(f"annotations: {CONCEPT}")
    at.number_input(key="correct_loop_epochs").set_value(2)
    before = {r.id for r in RunStore(workspace).list()}
    _click(at, _button(at, "Launch run"))
    new = [r for r in RunStore(workspace).list() if r.id not in before]
    assert len(new) == 1 and new[0].config["method"] == "rrclarc" and new[0].config["loop"]["epochs"] == 2
    assert new[0].config["concepts"][0]["labels"].endswith(".csv") and new[0].config["dataset"] == SMALL_SPEC
    deadline = time.time() + 240
    while (record := RunStore(workspace).get(new[0].id)).status not in FINAL_STATUSES and time.time() < deadline:
        time.sleep(1)
    assert record.status == "succeeded", record.error
    _run(at)
    assert at.selectbox(key="correct_watch_run").value == record.id
    assert any(b.label == "Open results" for b in at.button)
    assert at.get("plotly_chart"), "the watched run's loss curves are drawn (its history is loaded)"
    at.switch_page("results.py")
    _run(at)
    assert at.selectbox(key="results_run").value == record.id
    metrics = {m.label: m.value for m in at.metric}
    assert {"clean accuracy", "attacked accuracy", "TCAV sensitivity"} <= set(metrics)
    for m in at.metric:  # no change reads grey, a change green or red
        if m.proto.delta:
            assert (m.proto.color == MetricProto.MetricColor.GRAY) == (float(m.proto.delta.split()[0]) == 0), m.proto
    table = at.dataframe[0].value.set_index("figure")
    assert table.loc["attacked accuracy", "after"] == pytest.approx(record.result["after"]["attacked_acc"])
    assert {d.label for d in at.get("download_button")} >= {"Corrected checkpoint (.safetensors)"}
    load_checkpoint(record.outputs["checkpoint"])
    assert "Audit report (.html)" not in {d.label for d in at.get("download_button")}  # built on request only
    _click(at, _button(at, "Build audit report (.html)"))
    assert "Audit report (.html)" in {d.label for d in at.get("download_button")}
    report = at.session_state[f"results_report_{record.id}"]
    assert report.startswith("<!DOCTYPE html>") and record.id in report and "<script" not in report


def test_uploading_a_checkpoint_checks_its_content(workspace):
    at = _app()
    at.file_uploader(key="setup_upload").set_value(
        ("model.safetensors", DEFAULT_CHECKPOINT.read_bytes(), "application/octet-stream")
    )
    _run(at)
    assert at.text_input(key="checkpoint").value.startswith(str(workspace / "uploads"))
    assert {m.label: m.value for m in at.metric}["Architecture"] == "vgg_compact"
    at.file_uploader(key="setup_upload").set_value(("model.safetensors", b"<html>not a model", "text/html"))
    _run(at)
    assert any("neither a safetensors file nor a torch checkpoint" in e.value for e in at.error)


def test_changing_the_layer_reaches_the_other_pages():
    at = _app()
    at.selectbox(key="layer").set_value("features.13")
    _run(at)
    at.switch_page("concepts.py")
    _run(at)
    at.switch_page("setup.py")
    _run(at)
    assert at.selectbox(key="layer").value == "features.13"


def test_embedding_selection_opens_a_checklist_and_saves_the_kept_samples(workspace):
    _clear(workspace)
    ids = open_dataset(SMALL_SPEC, workspace).split("train").sample_ids
    dataset_id = open_dataset(SMALL_SPEC, workspace).dataset_id
    AnnotationStore(workspace).set_labels(dataset_id, "ruler", {ids[15]: 0})  # an existing clean label
    at = _app(page="explore.py")
    at.session_state["active_concept"] = CONCEPT  # annotating another concept than the checklist's
    at.segmented_control(key="explore_mode").set_value("Embedding")
    _run(at)
    assert at.selectbox(key="explore_embed_method").value == "pca" and len(at.get("plotly_chart")) == 1
    chosen = list(range(10, 16))
    # what the browser sends after a lasso around six points (each point carries its row as customdata)
    at.session_state["explore_embedding"] = {
        "selection": {"points": [{"customdata": [i]} for i in chosen], "point_indices": [], "box": [], "lasso": []}
    }
    _run(at)
    assert at.subheader[0].value == "6 selected"
    editor = f"explore_checklist_{hash(tuple(chosen))}_0"
    assert not at.session_state[editor]["edited_rows"] if editor in at.session_state else True  # rows start unticked
    at.session_state[editor] = {
        "edited_rows": {k: {"keep": True} for k in range(6) if k != 0},  # tick all but a false positive
        "added_rows": [],
        "deleted_rows": [],
    }
    _run(at)
    at.text_input(key="explore_checklist_concept").set_value("ruler")
    _run(at)
    _click(at, _button(at, "Save 4 as artifact (1 already labelled, kept)"))
    stored = AnnotationStore(workspace).labels(dataset_id, "ruler")
    assert stored == {ids[i]: 1 for i in chosen[1:5]} | {ids[15]: 0}  # the clean label was not overwritten
    assert at.session_state["active_concept"] == CONCEPT  # saving under "ruler" did not switch the concept
    for colour in ("predicted class", "annotation"):
        at.selectbox(key="explore_embed_colour").set_value(colour)
        _run(at)


def test_a_large_lasso_lists_every_selected_image(workspace):
    _clear(workspace)
    at = _app(page="explore.py")
    at.segmented_control(key="explore_mode").set_value("Embedding")
    _run(at)
    at.session_state["explore_embedding"] = {
        "selection": {"points": [{"customdata": [i]} for i in range(110)], "point_indices": [], "box": [], "lasso": []}
    }
    _run(at)
    _click(at, _button(at, "Tick all"))
    assert any(b.label == "Save 110 as artifact" for b in at.button)


def test_concepts_are_renamed_deleted_and_undo_restores_them(workspace):
    _clear(workspace)
    ids = open_dataset(SMALL_SPEC, workspace).split("train").sample_ids
    dataset_id = open_dataset(SMALL_SPEC, workspace).dataset_id
    store = AnnotationStore(workspace)
    store.set_labels(dataset_id, CONCEPT, {ids[0]: 1, ids[1]: 0})
    at = _app(page="explore.py")
    at.text_input(key=f"manage_name_{CONCEPT}").set_value("marker ink")
    _click(at, _button(at, "Rename"))
    assert [c.name for c in store.concepts(dataset_id)] == ["marker ink"]
    assert at.selectbox(key="concept").value == "marker ink"  # the active concept followed
    _click(at, _button(at, "Delete"))
    assert store.concepts(dataset_id) == []
    _click(at, _button(at, "Undo"))
    assert store.labels(dataset_id, "marker ink") == {ids[0]: 1, ids[1]: 0}


def test_undo_of_a_new_concept_leaves_no_empty_concept_selected(workspace):
    _clear(workspace)
    ids = open_dataset(SMALL_SPEC, workspace).split("train").sample_ids
    dataset_id = open_dataset(SMALL_SPEC, workspace).dataset_id
    AnnotationStore(workspace).set_labels(dataset_id, CONCEPT, {ids[0]: 1})
    at = _app(page="explore.py")
    at.selectbox(key="concept").set_value("+ new concept…")
    _run(at)
    at.text_input(key="new_concept").set_value("band-aid")
    _run(at)
    _annotate(at, n_artifact=2, n_clean=0)
    assert at.selectbox(key="concept").value == "band-aid"
    _click(at, _button(at, "Undo"))
    assert at.selectbox(key="concept").value == CONCEPT


def _planted_annotations(workspace) -> None:
    _clear(workspace)
    view = open_dataset(SMALL_SPEC, workspace).split("train")
    AnnotationStore(workspace).set_labels(
        open_dataset(SMALL_SPEC, workspace).dataset_id,
        CONCEPT,
        {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)},
    )


def _wait(workspace, run_ids, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        records = [RunStore(workspace).get(r) for r in run_ids]
        if all(r.status in FINAL_STATUSES for r in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"runs still going after {timeout} s: {[r.status for r in records]}")


def test_a_sweep_runs_every_lambda_and_results_show_its_trade_off(workspace):
    _planted_annotations(workspace)
    at = _app(page="correct.py")
    at.number_input(key="correct_loop_epochs").set_value(1)
    at.text_input(key="correct_sweep_lams").set_value("1e2, 1e5")
    _run(at)
    before = {r.id for r in RunStore(workspace).list()}
    _click(at, _button(at, "Launch sweep"))
    new = [r for r in RunStore(workspace).list() if r.id not in before]
    assert sorted(r.config["method_options"]["lam"] for r in new) == [1e2, 1e5]
    assert len({r.sweep_id for r in new}) == 1 and new[0].sweep_id
    records = _wait(workspace, [r.id for r in new])
    assert [r.status for r in records] == ["succeeded", "succeeded"]
    at.switch_page("results.py")
    _run(at)
    assert any(s.value == "The sweep's trade-off" for s in at.subheader)
    assert len(at.dataframe[1].value) == 2  # one row per run of the sweep
    at.switch_page("runs.py")
    _run(at)
    table = at.dataframe[0].value
    assert set(table["run"]) >= {r.id for r in records}
    row = table.set_index("run").loc[records[0].id]
    assert row["clean_acc after"] == pytest.approx(records[0].result["after"]["clean_acc"])
    assert row["concept"] == CONCEPT and row["method"] == "rrclarc" and row["lam"] == 1e2
    at.multiselect(key="runs_filter_method").select("rrclarc")
    at.multiselect(key="runs_filter_status").select("succeeded")
    at.multiselect(key="runs_filter_concept").select(CONCEPT)
    _run(at)
    table = at.dataframe[0].value
    assert set(table["method"]) == {"rrclarc"} and set(table["status"]) == {"succeeded"}
    assert set(table["concept"]) == {CONCEPT} and set(table["run"]) >= {r.id for r in records}
    at.multiselect(key="runs_compare").set_value([r.id for r in records])
    at.radio(key="runs_curve").set_value("penalty")
    _run(at)
    side = at.dataframe[1].value
    assert len(side.columns) == 2 and "attacked_acc after" in side.index
    overlay = at.get("plotly_chart")[-1].proto.spec
    assert overlay.count('"name"') >= 2 and "penalty per sample" in overlay  # one curve per compared run


def test_cancel_stops_a_running_run(workspace):
    _planted_annotations(workspace)
    at = _app(page="correct.py")
    at.number_input(key="correct_loop_epochs").set_value(500)
    _run(at)
    _click(at, _button(at, "Launch run"))
    run_id = at.session_state["correct_watch_run"]
    deadline = time.time() + 120
    while RunStore(workspace).get(run_id).status != "running" and time.time() < deadline:
        time.sleep(0.2)
    _run(at)
    _click(at, _button(at, "Cancel run"))
    (record,) = _wait(workspace, [run_id], timeout=20)
    assert record.status == "cancelled"
    _run(at)
    assert at.dataframe[0].value.set_index("run").loc[run_id, "status"] == "cancelled"


def test_setup_choices_live_in_the_url_so_a_reload_keeps_them():
    at = _app()  # chooses the small dataset on Setup
    assert at.query_params["dataset_spec"] in (SMALL_SPEC, [SMALL_SPEC])
    assert "checkpoint" not in at.query_params  # the default stays out of the URL
    reloaded = AppTest.from_file(APP, default_timeout=300)  # a reload: a new session with the same URL
    reloaded.query_params["dataset_spec"] = SMALL_SPEC
    reloaded.query_params["layer"] = "features.13"
    reloaded.switch_page("explore.py")
    _run(reloaded)
    assert reloaded.caption[0].value.startswith("120 of 120 training images")
    assert reloaded.session_state["layer"] == "features.13"


def test_ticks_survive_paging_through_the_grid(workspace):
    _clear(workspace)
    at = _app(page="explore.py")
    first = [c for c in at.checkbox if c.label == "select"][:2]
    for box in first:
        box.check()
    _run(at)
    at.get("pagination")[0].set_value(2)
    _run(at)
    second = [c for c in at.checkbox if c.label == "select"][:3]
    for box in second:
        box.check()
    _run(at)
    _click(at, _button(at, "Selected → artifact"))
    assert len(_labels(workspace)) == 5


def test_comparing_cav_kinds_draws_their_similarity(workspace):
    _planted_annotations(workspace)
    at = _app(page="concepts.py")
    _click(at, _button(at, "Fit CAV"))
    _click(at, _button(at, "Fit every kind and compare"))  # raised StreamlitWidgetAlreadyInstantiatedError before
    assert len(at.get("plotly_chart")) == 3  # the histogram, the ROC and the kinds' similarity


def test_a_bad_setup_choice_keeps_every_field_editable(workspace):
    at = _app()
    at.text_input(key="checkpoint").set_value(str(workspace / "no-such-model.safetensors"))
    _run(at)
    assert at.error and "not found" in at.error[0].value
    assert at.text_input(key="dataset_spec") is not None  # the dataset field is still there
    at.text_input(key="checkpoint").set_value(str(DEFAULT_CHECKPOINT))
    at.text_input(key="dataset_spec").set_value(SMALL_SPEC + "&artifact=none&classes=nevus")
    _run(at)
    at.text_input(key="dataset_spec").set_value("folder:/no/such/folder")
    _run(at)
    assert at.error and at.text_input(key="dataset_spec").value == "folder:/no/such/folder"
    assert {m.label for m in at.metric} >= {"Architecture"}  # the model card stays
    at.text_input(key="dataset_spec").set_value(SMALL_SPEC)
    _run(at)
    assert not at.error and "Clean" in {m.label for m in at.metric}  # fixed without a reload


def test_correct_keeps_its_knobs_across_pages(workspace):
    _planted_annotations(workspace)
    at = _app(page="correct.py")
    at.number_input(key="correct_loop_epochs").set_value(7)
    _run(at)
    at.switch_page("results.py")
    _run(at)
    at.switch_page("correct.py")
    _run(at)
    assert at.number_input(key="correct_loop_epochs").value == 7


def test_changing_a_filter_goes_back_to_the_first_page(workspace):
    at = _app(page="explore.py")
    at.get("pagination")[0].set_value(3)
    _run(at)
    at.multiselect(key="explore_filter_true").set_value(["nevus"])
    _run(at)
    assert at.get("pagination")[0].value == 1


def test_correcting_two_saved_cavs_in_one_run_shows_a_row_per_concept(workspace):
    from backend.concepts import CavLibrary, fit_concept

    _planted_annotations(workspace)
    model, dataset = load_checkpoint(DEFAULT_CHECKPOINT), open_dataset(SMALL_SPEC, workspace)
    view = dataset.split("train")
    planted = {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)}
    nevi = [sid for sid, label in zip(view.sample_ids, view.labels) if dataset.classes[label] == "nevus"]
    other = {sid: int(k % 3 == 0) for k, sid in enumerate(nevi)}  # a second concept, in another class
    AnnotationStore(workspace).set_labels(dataset.dataset_id, "second mark", other)
    library = CavLibrary(workspace)
    ids = [
        library.save(
            fit_concept(model, dataset, labels, concept=concept, n_random=0, workspace=workspace),
            f"{concept} {time.time_ns()}",
            dataset_id=dataset.dataset_id,
            model=model,
        ).id
        for concept, labels in ((CONCEPT, planted), ("second mark", other))
    ]
    at = _app(page="correct.py")
    at.selectbox(key="correct_cav").set_value(ids[0])
    _run(at)
    at.multiselect(key="correct_more_concepts").set_value([ids[1]])
    _run(at)
    at.number_input(key=f"correct_more_lam_{ids[1]}").set_value(1e4)
    at.number_input(key="correct_loop_epochs").set_value(1)
    _run(at)
    before = {r.id for r in RunStore(workspace).list()}
    _click(at, _button(at, "Launch run"))
    (new,) = [r for r in RunStore(workspace).list() if r.id not in before]
    more = new.config["concepts"][1:]
    assert [c["cav"] for c in more] == [ids[1]] and more[0]["lam"] == 1e4
    assert " + " in new.name
    (record,) = _wait(workspace, [new.id])
    assert record.status == "succeeded", record.error
    assert [c["attacked_class"] for c in record.result["concepts"]] == ["melanoma", "nevus"]
    at.switch_page("results.py")
    at.session_state["results_run"] = record.id
    _run(at)
    assert any(s.value == "Each concept" for s in at.subheader)
    table = next(d.value for d in at.dataframe if "concept" in d.value.columns and "gap closed" in d.value.columns)
    assert list(table["concept"]) == [CONCEPT, "second mark"]
    assert table["attacked_acc after"].notna().all()
