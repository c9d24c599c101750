"""Concept labels (sample id -> 1 shows the concept, 0 does not) and their one file format: a `sample_id,label` CSV.
Runs read them from such a file, written once and named by its content hash, so a run's labels never change under
it; without annotations, the benchmark's planted artifact gives them."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from backend.data import SPLITS, ClarcDataset, SplitView
from backend.errors import ConfigError
from backend.storage import atomic_write_bytes, csv_text, resolve_workspace

__all__ = [
    "check_known_ids",
    "infer_attacked_class",
    "planted_labels",
    "read_concept_labels",
    "write_concept_labels",
]


def planted_labels(dataset: ClarcDataset, split: str = "train") -> dict[str, int]:
    """Concept labels from the planted artifact: 1 where the biased view of the split carries it."""
    if dataset.planting is None:
        raise ConfigError("this dataset plants no artifact: give concept labels (a CSV of sample_id,label)")
    view = dataset.split(split)
    return {sid: int(flag) for sid, flag in zip(view.sample_ids, view.has_artifact)}


def infer_attacked_class(labels: Mapping[str, int], view: SplitView) -> str:
    """The class the concept is tied to: the true class of most of its samples in `view` (ties: the first class)."""
    counts = np.bincount(
        [view.labels[i] for i, sid in enumerate(view.sample_ids) if labels.get(sid) == 1], minlength=len(view.classes)
    )
    if not counts.any():
        raise ConfigError(f"no sample of the {view.split} split is labelled as showing the concept")
    return view.classes[int(counts.argmax())]


def check_known_ids(dataset: ClarcDataset, labels: Mapping[str, int]) -> None:
    """Refuse labels of samples the dataset does not have (in any split): a labels file of another dataset."""
    known = {sid for split in SPLITS for sid in dataset.split(split).sample_ids}
    unknown = [sid for sid in labels if sid not in known]
    if unknown:
        raise ConfigError(f"{len(unknown)} labelled samples are not in the dataset (first: {unknown[:5]})")


def read_concept_labels(path: str | os.PathLike) -> dict[str, int]:
    """A CSV with columns `sample_id,label` (label 1: shows the concept, 0: does not)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read concept labels {path}: {exc}") from exc
    if not rows or not {"sample_id", "label"} <= set(rows[0]):
        raise ConfigError(f"{path} needs a header `sample_id,label` and at least one row")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        value = (row["label"] or "").strip()
        if value not in ("0", "1"):
            raise ConfigError(f"{path} line {line}: label must be 0 or 1, got {value!r}")
        labels[row["sample_id"].strip()] = int(value)
    return labels


def write_concept_labels(labels: Mapping[str, int], workspace: str | os.PathLike | None = None) -> Path:
    """Write `labels` as an immutable `sample_id,label` CSV named by its sha256 under `<workspace>/annotations/`."""
    if not labels:
        raise ConfigError("no concept labels to write: label at least one sample")
    rows = []
    for sid, value in sorted(labels.items()):
        if not isinstance(sid, str) or not sid or sid != sid.strip():
            raise ConfigError(f"sample id {sid!r} must be non-empty text without surrounding spaces")
        if isinstance(value, str) or value not in (0, 1):
            raise ConfigError(f"label of sample {sid!r} must be 0 or 1, got {value!r}")
        rows.append((sid, int(value)))
    content = csv_text([("sample_id", "label"), *rows]).encode("utf-8")
    path = resolve_workspace(workspace) / "annotations" / f"{hashlib.sha256(content).hexdigest()}.csv"
    if not (path.is_file() and path.read_bytes() == content):
        atomic_write_bytes(path, content)
    return path
