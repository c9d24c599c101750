"""Saved CAVs: a fitted CAV kept in the workspace, so the one inspected on Concepts is the one a correction follows,
after a restart too. A record in `studio.db` (name, concept, layer, kind, pooling, scope, attacked class, counts,
quality figures) and the CAV itself (vector and sample ids) as one JSON file under `<workspace>/cavs/`. Names are
unique per (dataset, model); a CAV exports as that JSON file and imports into another workspace."""

from __future__ import annotations

import json
import os
import time
import unicodedata
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from backend.concepts.cav import Cav, load_cav
from backend.concepts.fit import ConceptFit
from backend.errors import ConfigError
from backend.models import LoadedModel, model_fingerprint
from backend.storage import atomic_write_bytes, resolve_workspace
from backend.storage.database import connect, create_tables

__all__ = ["CavLibrary", "SavedCav", "check_cav_fits", "resolve_cav"]

_MAX_NAME = 64
_QUALITY = ("train_auc", "held_out_auc", "alignment", "significance")  # kept with a saved fit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cavs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, dataset_id TEXT NOT NULL, model TEXT NOT NULL, concept TEXT NOT NULL,
    layer TEXT NOT NULL, kind TEXT NOT NULL, pooling TEXT NOT NULL, scope TEXT NOT NULL, attacked_class TEXT,
    n_concept INTEGER NOT NULL, n_other INTEGER NOT NULL, quality TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (dataset_id, model, name)
);
CREATE INDEX IF NOT EXISTS cavs_owner ON cavs(dataset_id, model);
"""


@dataclass(frozen=True)
class SavedCav:
    """A saved CAV's record: what it is, what it was fitted for, and how good it was; `load()` reads the CAV."""

    id: str
    name: str
    dataset_id: str
    model: str
    concept: str
    layer: str
    kind: str
    pooling: str
    scope: str
    attacked_class: str | None
    n_concept: int
    n_other: int
    quality: dict
    created: float
    path: Path

    def load(self) -> Cav:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"the file of the saved CAV {self.name!r} ({self.path}) cannot be read: {exc}") from exc
        return replace(Cav.from_dict(data, where=f"the saved CAV {self.name!r}"), name=self.name)

    def summary(self) -> dict:
        """The record as JSON-ready text (for lists, run records and model cards)."""
        fields = ("id", "name", "concept", "layer", "kind", "pooling", "scope", "attacked_class")
        return {k: getattr(self, k) for k in fields} | {"n_concept": self.n_concept, "n_other": self.n_other}


def _name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= _MAX_NAME:
        raise ConfigError(f"a CAV name needs 1 to {_MAX_NAME} characters, got {name!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ConfigError(f"the CAV name {name!r} contains control characters")
    return name.strip()


def check_cav_fits(cav: Cav, model: LoadedModel) -> None:
    """Refuse a CAV whose layer the model lacks or whose length is not the layer's channel count."""
    shapes = {info.name: info.shape for info in model.layers()}
    if cav.layer not in shapes:
        raise ConfigError(f"the CAV lives in layer {cav.layer!r}, which this {model.meta.arch} does not have")
    if shapes[cav.layer][0] != len(cav.vector):
        raise ConfigError(
            f"the CAV has {len(cav.vector)} channels but layer {cav.layer} of this model has {shapes[cav.layer][0]}"
        )


class CavLibrary:
    """The workspace's saved CAVs."""

    def __init__(self, workspace: str | os.PathLike | None = None) -> None:
        self.workspace = resolve_workspace(workspace)
        self.db = self.workspace / "studio.db"
        self.folder = self.workspace / "cavs"
        create_tables(self.db, _SCHEMA)

    def save(
        self,
        cav: Cav | ConceptFit,
        name: str,
        *,
        dataset_id: str,
        model: LoadedModel | str,
        quality: dict | None = None,
    ) -> SavedCav:
        """Keep a CAV (or a fit, whose quality figures come along) under `name` for this dataset and model."""
        if isinstance(cav, ConceptFit):
            quality = quality or {k: v for k, v in cav.summary().to_dict().items() if k in _QUALITY}
            cav = cav.cav
        name = _name(name)
        owner = model if isinstance(model, str) else model_fingerprint(model)
        cav_id = uuid.uuid4().hex[:12]
        path = self.folder / f"{cav_id}.json"
        cav = replace(cav, name=name)
        atomic_write_bytes(path, json.dumps(cav.to_dict(), sort_keys=True).encode())
        try:
            with connect(self.db, write=True) as db:
                if db.execute(
                    "SELECT 1 FROM cavs WHERE dataset_id = ? AND model = ? AND name = ?", (dataset_id, owner, name)
                ).fetchone():
                    raise ConfigError(f"a CAV named {name!r} already exists for this model and dataset")
                db.execute(
                    "INSERT INTO cavs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cav_id,
                        name,
                        dataset_id,
                        owner,
                        cav.concept,
                        cav.layer,
                        cav.kind,
                        cav.pooling,
                        cav.scope,
                        cav.attacked_class,
                        cav.n_concept,
                        cav.n_other,
                        json.dumps(quality or {}, sort_keys=True),
                        time.time(),
                    ),
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self.get(cav_id)

    def list(self, *, dataset_id: str | None = None, model: LoadedModel | str | None = None) -> list[SavedCav]:
        """Saved CAVs, newest first, optionally only those of a dataset and/or a model."""
        owner = model if model is None or isinstance(model, str) else model_fingerprint(model)
        query, args = "SELECT * FROM cavs WHERE 1=1", []
        if dataset_id is not None:
            query, args = query + " AND dataset_id = ?", [*args, dataset_id]
        if owner is not None:
            query, args = query + " AND model = ?", [*args, owner]
        with connect(self.db) as db:
            rows = db.execute(query + " ORDER BY created DESC", args).fetchall()
        return [self._record(row) for row in rows]

    def get(self, ref: str, *, dataset_id: str | None = None, model: LoadedModel | str | None = None) -> SavedCav:
        """A saved CAV by id, or by name among those of the dataset and model; a clear error when there is none."""
        matches = [c for c in self.list(dataset_id=dataset_id, model=model) if ref in (c.id, c.name)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(
                f"{len(matches)} saved CAVs are named {ref!r}; use its id ({', '.join(c.id for c in matches)})"
            )
        elsewhere = [c for c in self.list() if ref in (c.id, c.name)]
        names = ", ".join(sorted(c.name for c in self.list(dataset_id=dataset_id, model=model))) or "none"
        hint = " (there is one of another model or dataset)" if elsewhere else ""
        raise ConfigError(f"no saved CAV {ref!r} for this model and dataset{hint}; saved: {names}")

    def rename(self, cav_id: str, name: str) -> SavedCav:
        record = self.get(cav_id)
        name = _name(name)
        with connect(self.db, write=True) as db:
            if db.execute(
                "SELECT 1 FROM cavs WHERE dataset_id = ? AND model = ? AND name = ? AND id != ?",
                (record.dataset_id, record.model, name, cav_id),
            ).fetchone():
                raise ConfigError(f"a CAV named {name!r} already exists for this model and dataset")
            db.execute("UPDATE cavs SET name = ? WHERE id = ?", (name, cav_id))
        return self.get(cav_id)

    def delete(self, cav_id: str) -> None:
        record = self.get(cav_id)
        with connect(self.db, write=True) as db:
            db.execute("DELETE FROM cavs WHERE id = ?", (cav_id,))
        record.path.unlink(missing_ok=True)

    def export(self, cav_id: str) -> bytes:
        """The CAV as one JSON file: the vector, its metadata and its quality figures."""
        record = self.get(cav_id)
        data = record.load().to_dict() | {"quality": record.quality}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    def import_bytes(self, data: bytes, *, dataset_id: str, model: LoadedModel, name: str | None = None) -> SavedCav:
        """Save an exported CAV file for this dataset and model, after checking that it fits the model."""
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"the CAV file is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise ConfigError("the CAV file does not hold a CAV")
        cav = Cav.from_dict(payload, where="the CAV file")
        check_cav_fits(cav, model)
        quality = payload.get("quality") if isinstance(payload.get("quality"), dict) else {}
        return self.save(cav, name or cav.name or cav.concept, dataset_id=dataset_id, model=model, quality=quality)

    def _record(self, row) -> SavedCav:
        data = dict(row)
        data["quality"] = json.loads(data["quality"])
        return SavedCav(**data, path=self.folder / f"{data['id']}.json")


def resolve_cav(ref: str, model: LoadedModel, dataset_id: str, workspace: str | os.PathLike | None = None) -> Cav:
    """The CAV `ref` names: a CAV file (path), else a saved CAV's name or id for this model and dataset. It must fit
    the model."""
    path = Path(ref).expanduser()
    if path.suffix == ".json" and path.is_file():
        cav = load_cav(path)
    else:
        cav = CavLibrary(workspace).get(ref, dataset_id=dataset_id, model=model).load()
    check_cav_fits(cav, model)
    return cav
