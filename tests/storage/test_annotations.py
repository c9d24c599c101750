"""The annotation store on real SQLite: labels, undo, persistence, import/export, label files, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading

import pytest

from backend.concepts import write_concept_labels as concept_labels_file
from backend.errors import ConfigError
from backend.storage import ARTIFACT, CLEAN, AnnotationStore, ConceptSummary, ImportReport

DS = "synthderm"
IDS = [f"s{i:03d}" for i in range(300)]


def _batches(store: AnnotationStore) -> int:
    with sqlite3.connect(store.path) as db:
        return db.execute("SELECT COUNT(*) FROM annotation_batches").fetchone()[0]


def _write_many(workspace: str, offset: int, n: int) -> None:
    """One writer: `n` single-label set_labels calls on its own samples of the shared concept."""
    store = AnnotationStore(workspace)
    for i in range(offset, offset + n):
        store.set_labels(DS, "ruler", {IDS[i]: i % 2})


def test_set_get_remove_and_concepts(tmp_path):
    store = AnnotationStore(tmp_path)
    assert store.labels(DS, "skin marker") == {} and store.concepts(DS) == []
    first = store.set_labels(DS, " skin marker ", {"s001": ARTIFACT, "s002": CLEAN, "s003": True})
    assert first > 0
    assert store.labels(DS, "skin marker") == {"s001": 1, "s002": 0, "s003": 1}
    assert store.set_labels(DS, "skin marker", {"s001": 1}) == 0  # nothing changed, no batch
    second = store.set_labels(DS, "skin marker", {"s001": None, "s002": 1, "s404": None})
    assert second > first
    assert store.labels(DS, "skin marker") == {"s002": 1, "s003": 1}

    store.set_labels(DS, "ruler", {"s001": 0, "s005": 1})
    store.set_labels("other", "ruler", {"s009": 1})
    assert store.all_labels(DS) == {"ruler": {"s001": 0, "s005": 1}, "skin marker": {"s002": 1, "s003": 1}}
    summaries = store.concepts(DS)
    assert [s.name for s in summaries] == ["ruler", "skin marker"]
    assert summaries[0] == ConceptSummary("ruler", 1, 1, summaries[0].updated) and summaries[0].updated > 0
    assert (summaries[1].n_artifact, summaries[1].n_clean) == (2, 0)
    assert store.labels("other", "ruler") == {"s009": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set_labels(DS, "", {"s001": 1}),
        lambda s: s.set_labels(DS, "x" * 65, {"s001": 1}),
        lambda s: s.set_labels(DS, "bad\nname", {"s001": 1}),
        lambda s: s.set_labels(" ", "ruler", {"s001": 1}),
        lambda s: s.set_labels(DS, "ruler", {"s001": 2}),
        lambda s: s.set_labels(DS, "ruler", {"s001": "1"}),
    ],
)
def test_invalid_input_raises_and_writes_nothing(tmp_path, call):
    store = AnnotationStore(tmp_path)
    with pytest.raises(ConfigError):
        call(store)
    assert _batches(store) == 0


def test_label_error_names_the_sample(tmp_path):
    with pytest.raises(ConfigError, match="s042"):
        AnnotationStore(tmp_path).set_labels(DS, "ruler", {"s001": 1, "s042": 5})


def test_undo_single_bulk_delete_and_twice(tmp_path):
    store = AnnotationStore(tmp_path)
    assert store.undo(DS) is None
    bulk = store.set_labels(DS, "ruler", {sid: 1 for sid in IDS[:100]})
    single = store.set_labels(DS, "ruler", {"s000": 0})
    store.set_labels(DS, "marker", {"s001": 1})
    store.set_labels("other", "ruler", {"s001": 1})  # another dataset's history is separate

    deleted = store.delete_concept(DS, "ruler")
    assert store.labels(DS, "ruler") == {} and [c.name for c in store.concepts(DS)] == ["marker"]
    assert store.undo(DS) == {"concept": "ruler", "concepts": ["ruler"], "n": 100, "batch": deleted, "source": "delete"}
    assert store.labels(DS, "ruler") == {"s000": 0} | {sid: 1 for sid in IDS[1:100]}

    assert store.undo(DS)["concept"] == "marker"  # the latest not-yet-undone batch
    assert store.undo(DS)["batch"] == single
    assert store.labels(DS, "ruler")["s000"] == 1
    assert store.undo(DS) == {"concept": "ruler", "concepts": ["ruler"], "n": 100, "batch": bulk, "source": "app"}
    assert store.all_labels(DS) == {}
    assert store.undo(DS) is None
    assert store.labels("other", "ruler") == {"s001": 1}


def test_undo_restores_removed_labels_and_new_changes_stack(tmp_path):
    store = AnnotationStore(tmp_path)
    store.set_labels(DS, "ruler", {"s001": 1, "s002": 0})
    store.set_labels(DS, "ruler", {"s001": None, "s002": 1, "s003": 0})
    store.undo(DS)
    assert store.labels(DS, "ruler") == {"s001": 1, "s002": 0}
    store.set_labels(DS, "ruler", {"s004": 1})
    store.undo(DS)
    assert store.labels(DS, "ruler") == {"s001": 1, "s002": 0}  # the undone batch is not redone
    store.undo(DS)
    assert store.labels(DS, "ruler") == {} and store.undo(DS) is None


def test_persistence_across_instances(tmp_path):
    store = AnnotationStore(tmp_path)
    store.set_labels(DS, "ruler", {"s001": 1, "s002": 0})
    store.set_labels(DS, "ruler", {"s003": 1})
    restarted = AnnotationStore(tmp_path)
    assert restarted.labels(DS, "ruler") == {"s001": 1, "s002": 0, "s003": 1}
    assert restarted.undo(DS)["n"] == 1
    assert AnnotationStore(tmp_path).labels(DS, "ruler") == {"s001": 1, "s002": 0}


def _filled(tmp_path) -> AnnotationStore:
    store = AnnotationStore(tmp_path / "a")
    store.set_labels(DS, "ruler", {sid: i % 2 for i, sid in enumerate(IDS[:40])})
    store.set_labels(DS, "skin, marker", {sid: 1 for sid in IDS[30:50]})
    return store


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_round_trip(tmp_path, fmt):
    source = _filled(tmp_path)
    text = source.export_csv(DS) if fmt == "csv" else source.export_json(DS)
    fresh = AnnotationStore(tmp_path / "b")
    report = fresh.import_text(DS, text, fmt, known_ids=IDS)
    assert fresh.all_labels(DS) == source.all_labels(DS)
    assert (report.imported, report.unchanged, report.concepts) == (60, 0, ("ruler", "skin, marker"))
    assert not (report.unknown_ids or report.duplicates or report.bad_rows)
    again = fresh.import_text(DS, text.encode(), fmt, known_ids=IDS)
    assert (again.imported, again.unchanged, again.batch) == (0, 60, 0)
    assert fresh.undo(DS)["n"] == 60 and fresh.all_labels(DS) == {}  # the import was one batch


def test_export_formats(tmp_path):
    store = _filled(tmp_path)
    lines = store.export_csv(DS, ["ruler"]).splitlines()
    assert lines[0] == "concept,sample_id,label" and lines[1:3] == ["ruler,s000,0", "ruler,s001,1"]
    assert len(lines) == 41 and lines == [lines[0], *sorted(lines[1:])]
    data = json.loads(store.export_json(DS, ["skin, marker"]))
    assert data == {"dataset_id": DS, "concepts": {"skin, marker": {sid: 1 for sid in IDS[30:50]}}}
    with pytest.raises(ConfigError, match="nope"):
        store.export_csv(DS, ["nope"])


def test_csv_import_reports_and_imports_good_rows(tmp_path):
    store = AnnotationStore(tmp_path)
    text = "Sample_ID , Label\ns001,artifact\ns002, Clean \ns003,YES\nx999,1\ns004,maybe\ns001,0\n,1\n\ns005,false\n"
    report = store.import_text(DS, text, "csv", known_ids=IDS, concept="skin marker")
    assert store.labels(DS, "skin marker") == {"s001": 1, "s002": 0, "s003": 1, "s005": 0}
    assert report.imported == 4 and report.unknown_ids == ("x999",)
    assert report.duplicates == ("skin marker/s001",)
    assert [line for line, _ in report.bad_rows] == [6, 8] and "label must be" in report.bad_rows[0][1]
    assert report.summary() == (
        "imported 4 labels into skin marker; 1 unknown id, 1 duplicate, 2 bad rows "
        f"(line 6: {report.bad_rows[0][1]}; and 1 more)"
    )
    assert json.loads(json.dumps(report.to_dict()))["bad_rows"][0][0] == 6


def test_csv_import_concept_column_and_missing_concept(tmp_path):
    store = AnnotationStore(tmp_path)
    text = "concept,sample_id,label\nruler,s001,1\n,s002,0\nmarker,s002,true\n"
    report = store.import_text(DS, text, "csv", known_ids=IDS)
    assert store.all_labels(DS) == {"marker": {"s002": 1}, "ruler": {"s001": 1}}
    assert report.bad_rows[0][0] == 3 and "no concept" in report.bad_rows[0][1]
    with_default = AnnotationStore(tmp_path / "b").import_text(DS, text, "csv", known_ids=IDS, concept="ruler")
    assert with_default.imported == 3 and not with_default.bad_rows


def test_json_list_import_reports(tmp_path):
    store = AnnotationStore(tmp_path)
    items = [
        {"sample_id": "s001", "label": 1, "concept": "ruler"},
        {"sample_id": "s002", "label": "clean"},
        {"sample_id": "s003", "label": 7},
        "not an object",
        {"sample_id": "zz", "label": 1},
        {"sample_id": "s001", "label": 0, "concept": "ruler"},
        {"sample_id": "s004", "label": True, "concept": "x" * 80},
    ]
    report = store.import_text(DS, json.dumps(items), "json", known_ids=set(IDS), concept="marker")
    assert store.all_labels(DS) == {"marker": {"s002": 0}, "ruler": {"s001": 1}}
    assert isinstance(report, ImportReport) and report.concepts == ("marker", "ruler")
    assert [i for i, _ in report.bad_rows] == [2, 3, 6]
    assert report.unknown_ids == ("zz",) and report.duplicates == ("ruler/s001",)
    assert "item 2:" in report.summary()


@pytest.mark.parametrize(
    "text, fmt, match",
    [
        ("", "csv", "empty"),
        ("id,value\ns001,1\n", "csv", "header"),
        ('sample_id,label\n"s001,1\n', "csv", "malformed"),
        ("{not json", "json", "JSON"),
        ('{"dataset_id": "synthderm"}', "json", "concepts"),
        ('{"concepts": {"ruler": [1, 2]}}', "json", "concepts"),
        ("42", "json", "concepts"),
        (b"sample_id,label\ns\xff01,1\n", "csv", "UTF-8"),
        ("sample_id,label\ns001,1\n", "xlsx", "format"),
    ],
)
def test_malformed_files_raise_and_write_nothing(tmp_path, text, fmt, match):
    store = AnnotationStore(tmp_path)
    store.set_labels(DS, "ruler", {"s001": 0})
    with pytest.raises(ConfigError, match=match):
        store.import_text(DS, text, fmt, known_ids=IDS, concept="ruler")
    assert store.all_labels(DS) == {"ruler": {"s001": 0}} and _batches(store) == 1


def test_concept_labels_file(tmp_path):
    from backend.concepts import read_concept_labels

    labels = {"s010": 1, "s002": 0, "id,with comma": 1}
    path = concept_labels_file(labels, tmp_path)
    assert path.parent == tmp_path / "annotations" and path.suffix == ".csv"
    assert read_concept_labels(path) == labels
    assert concept_labels_file(dict(reversed(labels.items())), tmp_path) == path
    assert concept_labels_file(labels | {"s002": 1}, tmp_path) != path
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".csv")] == []
    with pytest.raises(ConfigError):
        concept_labels_file({}, tmp_path)
    with pytest.raises(ConfigError, match="s001"):
        concept_labels_file({"s001": 3}, tmp_path)


def test_concurrent_threads(tmp_path):
    AnnotationStore(tmp_path)
    threads = [threading.Thread(target=_write_many, args=(str(tmp_path), 50 * t, 50)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert AnnotationStore(tmp_path).labels(DS, "ruler") == {IDS[i]: i % 2 for i in range(200)}


def test_concurrent_processes(tmp_path):
    AnnotationStore(tmp_path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), 50 * p, 50)) for p in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert AnnotationStore(tmp_path).labels(DS, "ruler") == {IDS[i]: i % 2 for i in range(100)}
    assert _batches(AnnotationStore(tmp_path)) == 100
