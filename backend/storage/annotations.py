"""The annotation store: clinicians' concept labels (sample id -> artifact/clean) in `<workspace>/studio.db`.

Labels are hours of expert work, so every write is one short IMMEDIATE transaction with synchronous=FULL in WAL
mode, and every change is logged (old and new label) in a numbered batch that `undo` can revert.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import time
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from backend.errors import ConfigError
from backend.storage.database import connect, create_tables
from backend.storage.files import csv_text
from backend.storage.workspace import resolve_workspace

__all__ = ["ARTIFACT", "CLEAN", "ConceptSummary", "ImportReport", "AnnotationStore"]

log = logging.getLogger(__name__)

ARTIFACT, CLEAN = 1, 0
_MAX_CONCEPT = 64
_WORDS = {"1": 1, "0": 0, "artifact": 1, "clean": 0, "true": 1, "false": 0, "yes": 1, "no": 0}
_LABEL_HELP = "label must be 1/0, artifact/clean, true/false or yes/no"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    dataset_id TEXT NOT NULL, concept TEXT NOT NULL, sample_id TEXT NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (0, 1)), updated REAL NOT NULL,
    PRIMARY KEY (dataset_id, concept, sample_id)
);
CREATE TABLE IF NOT EXISTS annotation_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id TEXT NOT NULL, source TEXT NOT NULL, at REAL NOT NULL,
    n INTEGER NOT NULL, undone INTEGER NOT NULL DEFAULT 0, undone_at REAL
);
CREATE TABLE IF NOT EXISTS annotation_log (
    id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, dataset_id TEXT NOT NULL, concept TEXT NOT NULL,
    sample_id TEXT NOT NULL, old_label INTEGER, new_label INTEGER, at REAL NOT NULL, source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotation_batches_open ON annotation_batches(dataset_id, undone);
CREATE INDEX IF NOT EXISTS annotation_log_batch ON annotation_log(batch);
CREATE INDEX IF NOT EXISTS annotation_log_concept ON annotation_log(dataset_id, concept);
"""


@dataclass(frozen=True)
class ConceptSummary:
    """One annotated concept of a dataset: how many samples carry each label and when it last changed."""

    name: str
    n_artifact: int
    n_clean: int
    updated: float


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote and what it skipped (unknown ids, duplicates, bad rows), for the user to check."""

    imported: int
    unchanged: int
    unknown_ids: tuple[str, ...]
    duplicates: tuple[str, ...]
    bad_rows: tuple[tuple[int, str], ...]
    concepts: tuple[str, ...]
    batch: int = 0
    fmt: str = "csv"

    def to_dict(self) -> dict:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return data | {"bad_rows": [list(row) for row in self.bad_rows]}

    def summary(self) -> str:
        """One sentence, e.g. "imported 12 labels into skin marker; 2 unknown ids, 1 bad row (line 5: ...)"."""
        where = "into " + ", ".join(self.concepts) if self.concepts else "(no usable rows)"
        text = f"imported {_plural(self.imported, 'label')} {where}"
        if self.unchanged:
            text += f" ({self.unchanged} already stored)"
        skipped = [
            _plural(len(v), w) for v, w in ((self.unknown_ids, "unknown id"), (self.duplicates, "duplicate")) if v
        ]
        if self.bad_rows:
            unit = "line" if self.fmt == "csv" else "item"
            first = f"{unit} {self.bad_rows[0][0]}: {self.bad_rows[0][1]}"
            more = f"; and {len(self.bad_rows) - 1} more" if len(self.bad_rows) > 1 else ""
            skipped.append(f"{_plural(len(self.bad_rows), 'bad row')} ({first}{more})")
        return text + ("; " + ", ".join(skipped) if skipped else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _dataset(dataset_id: str) -> str:
    if not isinstance(dataset_id, str) or not dataset_id.strip():
        raise ConfigError("a dataset id is needed to store annotations")
    return dataset_id.strip()


def _concept(name: str) -> str:
    """The stripped concept name; 1..64 characters without control characters."""
    if not isinstance(name, str):
        raise ConfigError(f"a concept name must be text, got {name!r}")
    name = name.strip()
    if not 1 <= len(name) <= _MAX_CONCEPT:
        raise ConfigError(f"a concept name needs 1 to {_MAX_CONCEPT} characters, got {len(name)}: {name[:80]!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ConfigError(f"concept name {name!r} contains control characters")
    return name


def _sample(sample_id: object) -> str:
    if not isinstance(sample_id, str) or not sample_id or sample_id != sample_id.strip():
        raise ConfigError(f"sample id {sample_id!r} must be non-empty text without surrounding spaces")
    return sample_id


def _label(sample_id: str, value: object) -> int:
    if isinstance(value, str) or value not in (0, 1):
        raise ConfigError(f"label of sample {sample_id!r} must be 0 or 1, got {value!r}")
    return int(value)


def _parse_label(value: object) -> int | None:
    """A label as clinicians write it (1/0, artifact/clean, true/false, yes/no), or None if it is none of these."""
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    if isinstance(value, bool | int | float) and value in (0, 1):
        return int(value)
    return None


class AnnotationStore:
    """Concept labels per dataset, their change log and undo, in `<workspace>/studio.db`."""

    def __init__(self, workspace: str | os.PathLike | None = None) -> None:
        self.workspace = resolve_workspace(workspace)
        self.path = self.workspace / "studio.db"
        create_tables(self.path, _SCHEMA)

    def _connect(self, write: bool = False):
        return connect(self.path, write=write)

    # -- writing ------------------------------------------------------------------------------------------------

    def set_labels(
        self, dataset_id: str, concept: str, labels: Mapping[str, int | None], *, source: str = "app"
    ) -> int:
        """Set (or, with None, remove) labels of one concept in one batch; its id, or 0 when nothing changed."""
        dataset_id, concept = _dataset(dataset_id), _concept(concept)
        new = {_sample(sid): None if v is None else _label(sid, v) for sid, v in labels.items()}
        with self._connect(write=True) as db:
            return self._apply(db, dataset_id, {concept: new}, source)[0]

    def delete_concept(self, dataset_id: str, concept: str) -> int:
        """Remove all labels of `concept` as one undoable batch; its id (0 if the concept had no labels)."""
        dataset_id, concept = _dataset(dataset_id), _concept(concept)
        with self._connect(write=True) as db:
            batch, n = self._apply(db, dataset_id, {concept: None}, "delete")
        log.info("deleted concept %r of %s (%d labels, batch %d)", concept, dataset_id, n, batch)
        return batch

    def rename_concept(self, dataset_id: str, concept: str, new_name: str) -> int:
        """Move every label of `concept` to `new_name` as one undoable batch; its id. The new name must be free."""
        dataset_id, concept, new_name = _dataset(dataset_id), _concept(concept), _concept(new_name)
        if new_name == concept:
            return 0
        with self._connect(write=True) as db:
            taken = db.execute(
                "SELECT 1 FROM annotations WHERE dataset_id = ? AND concept = ? LIMIT 1", (dataset_id, new_name)
            ).fetchone()
            if taken:
                raise ConfigError(f"a concept named {new_name!r} already has labels; choose another name")
            labels = dict(
                db.execute(
                    "SELECT sample_id, label FROM annotations WHERE dataset_id = ? AND concept = ?",
                    (dataset_id, concept),
                ).fetchall()
            )
            if not labels:
                raise ConfigError(f"the concept {concept!r} has no labels to rename")
            batch, _ = self._apply(db, dataset_id, {new_name: labels, concept: None}, "rename")
        log.info("renamed concept %r of %s to %r (batch %d)", concept, dataset_id, new_name, batch)
        return batch

    def undo(self, dataset_id: str) -> dict | None:
        """Revert the latest batch of `dataset_id` not undone yet; what it reverted, or None if nothing is left."""
        dataset_id = _dataset(dataset_id)
        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT id, source, n FROM annotation_batches WHERE dataset_id = ? AND undone = 0 "
                "ORDER BY id DESC LIMIT 1",
                (dataset_id,),
            ).fetchone()
            if row is None:
                return None
            batch, source, n = row
            changes = db.execute(
                "SELECT concept, sample_id, old_label FROM annotation_log WHERE batch = ? ORDER BY id DESC", (batch,)
            ).fetchall()
            now = time.time()
            self._write_labels(db, dataset_id, changes, now)
            db.execute("UPDATE annotation_batches SET undone = 1, undone_at = ? WHERE id = ?", (now, batch))
        concepts = sorted({c for c, _, _ in changes})
        log.info("undid batch %d of %s (%s, %d labels)", batch, dataset_id, ", ".join(concepts), n)
        return {"concept": ", ".join(concepts), "concepts": concepts, "n": n, "batch": batch, "source": source}

    def _apply(
        self,
        db: sqlite3.Connection,
        dataset_id: str,
        changes: Mapping[str, Mapping[str, int | None] | None],
        source: str,
    ) -> tuple[int, int]:
        """Write the labels that differ from the stored ones as one logged batch, inside the caller's transaction.

        `changes` maps concept -> sample id -> new label (None: remove); a concept mapped to None loses all labels.
        """
        diff = []
        for concept, new in changes.items():
            rows = db.execute(
                "SELECT sample_id, label FROM annotations WHERE dataset_id = ? AND concept = ?", (dataset_id, concept)
            )
            current = dict(rows.fetchall())
            new = dict.fromkeys(current) if new is None else new
            diff += [(concept, sid, current.get(sid), label) for sid, label in new.items() if current.get(sid) != label]
        if not diff:
            return 0, 0
        now = time.time()
        batch = db.execute(
            "INSERT INTO annotation_batches (dataset_id, source, at, n) VALUES (?, ?, ?, ?)",
            (dataset_id, source, now, len(diff)),
        ).lastrowid
        db.executemany(
            "INSERT INTO annotation_log (batch, dataset_id, concept, sample_id, old_label, new_label, at, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(batch, dataset_id, c, sid, old, new, now, source) for c, sid, old, new in diff],
        )
        self._write_labels(db, dataset_id, [(c, sid, new) for c, sid, _, new in diff], now)
        return batch, len(diff)

    @staticmethod
    def _write_labels(db: sqlite3.Connection, dataset_id: str, rows, now: float) -> None:
        """Store (concept, sample_id, label) rows; a label None deletes the row."""
        db.executemany(
            "INSERT INTO annotations (dataset_id, concept, sample_id, label, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (dataset_id, concept, sample_id) DO UPDATE SET label = excluded.label, "
            "updated = excluded.updated",
            [(dataset_id, c, sid, label, now) for c, sid, label in rows if label is not None],
        )
        db.executemany(
            "DELETE FROM annotations WHERE dataset_id = ? AND concept = ? AND sample_id = ?",
            [(dataset_id, c, sid) for c, sid, label in rows if label is None],
        )

    # -- reading ------------------------------------------------------------------------------------------------

    def labels(self, dataset_id: str, concept: str) -> dict[str, int]:
        return self.all_labels(dataset_id, [concept]).get(_concept(concept), {})

    def all_labels(self, dataset_id: str, concepts: Collection[str] | None = None) -> dict[str, dict[str, int]]:
        """concept -> sample id -> label, sorted, optionally only of `concepts`."""
        query, args = "SELECT concept, sample_id, label FROM annotations WHERE dataset_id = ?", [_dataset(dataset_id)]
        if concepts is not None:
            args += sorted({_concept(c) for c in concepts})
            query += f" AND concept IN ({', '.join('?' * (len(args) - 1))})"
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY concept, sample_id", args).fetchall()
        result: dict[str, dict[str, int]] = {}
        for concept, sid, label in rows:
            result.setdefault(concept, {})[sid] = label
        return result

    def concepts(self, dataset_id: str) -> list[ConceptSummary]:
        dataset_id = _dataset(dataset_id)
        with self._connect() as db:
            counts = db.execute(
                "SELECT concept, SUM(label = 1), SUM(label = 0), MAX(updated) FROM annotations "
                "WHERE dataset_id = ? GROUP BY concept ORDER BY concept",
                (dataset_id,),
            ).fetchall()
            changed = dict(
                db.execute(
                    "SELECT l.concept, MAX(MAX(l.at), COALESCE(MAX(b.undone_at), 0)) FROM annotation_log l "
                    "JOIN annotation_batches b ON b.id = l.batch WHERE l.dataset_id = ? GROUP BY l.concept",
                    (dataset_id,),
                ).fetchall()
            )
        return [ConceptSummary(c, a, n, max(u, changed.get(c, 0.0))) for c, a, n, u in counts]

    # -- files --------------------------------------------------------------------------------------------------

    def _export(self, dataset_id: str, concepts: Collection[str] | None) -> dict[str, dict[str, int]]:
        data = self.all_labels(dataset_id, concepts)
        missing = sorted({_concept(c) for c in concepts or ()} - set(data))
        if missing:
            raise ConfigError(f"no labels for concept(s) {', '.join(missing)} in dataset {dataset_id!r}")
        return data

    def export_csv(self, dataset_id: str, concepts: Collection[str] | None = None) -> str:
        """`concept,sample_id,label` rows sorted by concept and sample id (all concepts unless `concepts`)."""
        rows = [
            [concept, sid, label]
            for concept, labels in self._export(dataset_id, concepts).items()
            for sid, label in labels.items()
        ]
        return csv_text([["concept", "sample_id", "label"], *rows])

    def export_json(self, dataset_id: str, concepts: Collection[str] | None = None) -> str:
        data = {"dataset_id": _dataset(dataset_id), "concepts": self._export(dataset_id, concepts)}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def import_text(
        self,
        dataset_id: str,
        text: str | bytes,
        fmt: Literal["csv", "json"],
        *,
        known_ids: Collection[str],
        concept: str | None = None,
    ) -> ImportReport:
        """Merge labels from a CSV/JSON file into the store as one batch; skipped rows are reported, not written."""
        dataset_id = _dataset(dataset_id)
        default = None if concept is None else _concept(concept)
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"the annotation file is not UTF-8 text ({exc})") from exc
        text = text.removeprefix("\ufeff")
        if fmt == "csv":
            items = _csv_items(text)
        elif fmt == "json":
            items = _json_items(text, dataset_id)
        else:
            raise ConfigError(f"annotation format must be 'csv' or 'json', got {fmt!r}")
        known = known_ids if isinstance(known_ids, set | frozenset) else set(known_ids)
        bad, unknown, duplicates, good = [], {}, {}, {}
        for where, raw_concept, raw_sid, raw_label in items:
            try:
                blank = raw_concept is None or (isinstance(raw_concept, str) and not raw_concept.strip())
                name = default if blank else _concept(raw_concept)
            except ConfigError as exc:
                bad.append((where, str(exc)))
                continue
            sid = str(raw_sid).strip() if isinstance(raw_sid, str | int) and not isinstance(raw_sid, bool) else ""
            label = _parse_label(raw_label)
            if name is None:
                bad.append((where, "no concept: add a concept column or choose the concept to import into"))
            elif not sid:
                bad.append((where, f"sample_id is missing or empty, got {raw_sid!r}"))
            elif label is None:
                bad.append((where, f"{_LABEL_HELP}, got {raw_label!r}"))
            elif sid not in known:
                unknown.setdefault(sid, None)
            elif sid in good.get(name, {}):
                duplicates.setdefault(f"{name}/{sid}", None)
            else:
                good.setdefault(name, {})[sid] = label
        batch = imported = 0
        if good:
            with self._connect(write=True) as db:
                batch, imported = self._apply(db, dataset_id, good, "import")
        report = ImportReport(
            imported=imported,
            unchanged=sum(map(len, good.values())) - imported,
            unknown_ids=tuple(unknown),
            duplicates=tuple(duplicates),
            bad_rows=tuple(bad),
            concepts=tuple(sorted(good)),
            batch=batch,
            fmt=fmt,
        )
        log.info("annotation import into %s: %s", dataset_id, report.summary())
        return report


def _csv_items(text: str) -> list[tuple[int, object, object, object]]:
    """(line, concept, sample_id, label) per CSV row; a file without a usable header raises ConfigError."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise ConfigError("the CSV file is empty: it needs a header `sample_id,label` (and optionally `concept`)")
        columns = [cell.strip().lower() for cell in header]
        if not {"sample_id", "label"} <= set(columns) or len(set(columns)) != len(columns):
            raise ConfigError(f"the CSV header must name sample_id, label and optionally concept, got {header}")
        index = {name: columns.index(name) for name in ("concept", "sample_id", "label") if name in columns}
        items = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            cells = {name: row[i] if i < len(row) else None for name, i in index.items()}
            items.append((reader.line_num, cells.get("concept"), cells["sample_id"], cells["label"]))
    except csv.Error as exc:
        raise ConfigError(f"the CSV file is malformed at line {reader.line_num}: {exc}") from exc
    return items


def _json_items(text: str, dataset_id: str) -> list[tuple[int, object, object, object]]:
    """(item index, concept, sample_id, label) from our export format or a list of objects; else ConfigError."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, integers over 4300 digits, nesting too deep
        raise ConfigError(f"the annotation file is not valid JSON: {exc}") from exc
    if isinstance(data, list):
        return [
            (i, item.get("concept"), item.get("sample_id"), item.get("label"))
            if isinstance(item, dict)
            else (i, None, None, None)
            for i, item in enumerate(data)
        ]
    concepts = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(concepts, dict) or not all(isinstance(v, dict) for v in concepts.values()):
        raise ConfigError(
            'the JSON file must be {"dataset_id": ..., "concepts": {name: {sample_id: 0|1}}} '
            'or a list of {"sample_id", "label", "concept"} objects'
        )
    if data.get("dataset_id") not in (None, dataset_id):
        log.warning("importing labels exported from dataset %r into %r", data.get("dataset_id"), dataset_id)
    pairs = [(name or "", sid, label) for name, labels in concepts.items() for sid, label in labels.items()]
    return [(i, name, sid, label) for i, (name, sid, label) in enumerate(pairs)]
