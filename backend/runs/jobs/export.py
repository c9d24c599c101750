"""Export a corrected model: safetensors weights loadable into the plain architecture, and a JSON model card with the
method, its config, the CAV, before/after metrics and the hashes of the data and annotations it was made from."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from backend.concepts import Cav
from backend.correction import CorrectionResult
from backend.data.dataset import ClarcDataset
from backend.evaluation import estimate_notice
from backend.models import card_path, find_projection, save_checkpoint
from backend.runs.jobs.result import ConceptOutcome
from backend.storage import atomic_path

__all__ = ["N_EXAMPLES", "export_corrected", "annotation_hash", "cav_file", "load_examples", "save_examples"]

N_EXAMPLES = 6  # example test images of each kind kept with a run


def annotation_hash(artifact_ids: Collection[str]) -> str:
    """A content hash of an annotation set (order-independent)."""
    return hashlib.sha256("\n".join(sorted(artifact_ids)).encode()).hexdigest()


def export_corrected(
    result: CorrectionResult,
    out: str | os.PathLike,
    *,
    cavs: Sequence[Cav],
    outcomes: Sequence[ConceptOutcome],
    dataset: ClarcDataset,
    artifact_ids: Collection[str] | None = None,
) -> tuple[Path, Path]:
    """Write `<out>` (.safetensors), its card `<out>.json` (the method, each concept's CAV with its vector and its
    figures before and after, the first concept's as the headline, where the attacked figures come from and whether
    they can be trusted: `attacked_figures`, with the gap closed and its interval) and the
    first CAV itself (`cav_file`); returns the checkpoint's and the card's paths. P-ClArC's projection travels in
    the card and is re-attached by `load_checkpoint`; the weights alone load into the plain architecture."""
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out / "model.safetensors"
    model = result.model
    rows = [o.to_dict() | {"vector": [float(v) for v in cav.vector]} for cav, o in zip(cavs, outcomes)]
    first = outcomes[0]
    correction = dict(model.meta.training.get("correction", {}))
    correction |= {
        "cav": rows[0]["cav"] | {"vector": rows[0]["vector"]},
        "before": first.before.to_dict(),
        "after": first.after.to_dict(),
        "history": result.history,
        "seconds": result.seconds,
        "dataset": {"spec": str(dataset.spec), "dataset_id": dataset.dataset_id},
        "annotations_sha256": annotation_hash(artifact_ids) if artifact_ids is not None else None,
        "based_on": model.meta.dataset,
        "concepts": rows,
        "attacked_figures": {
            "measured": not first.after.estimated,
            "reliable": first.reliable,
            "notice": estimate_notice(first.after),
            "gap_closed": first.gap_closed(),
            "gap_closed_interval": first.gap_closed_interval,
        },
    }
    layer = correction.get("layer", cavs[0].layer)
    projection = find_projection(model.module, layer)
    if projection is not None:
        correction["projection"] = {
            "layer": layer,
            "h": projection.h.cpu().tolist(),
            "offset": projection.offset.cpu().tolist(),
        }
    meta = replace(
        model.meta,
        training=model.meta.training | {"correction": correction},
        metrics=first.after.to_dict(),
        created="",
    )
    path = save_checkpoint(model.module, meta, out)
    cavs[0].save(cav_file(path))
    return path, card_path(path)


def cav_file(checkpoint: Path) -> Path:
    """The CAV a corrected checkpoint was made along, beside it (`<name>.cav.json`), to evaluate or correct again."""
    return Path(checkpoint).with_suffix(".cav.json")


def save_examples(checkpoint: Path, examples: dict) -> Path:
    """Keep a run's example test images (uint8 images, artifact masks, ids, labels, kinds) beside its checkpoint."""
    path = Path(checkpoint).with_suffix(".examples.npz")
    size = examples["images"][0].shape if examples["images"] else (0, 0, 3)
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            images=np.stack(examples["images"]) if examples["images"] else np.zeros((0, *size), np.uint8),
            masks=np.stack(examples["masks"]) if examples["masks"] else np.zeros((0, *size[:2]), bool),
            sample_ids=np.array(examples["sample_ids"], dtype=str),
            labels=np.array(examples["labels"], dtype=np.int64),
            kinds=np.array(examples["kinds"], dtype=str),
        )
    return path


def load_examples(path: str | os.PathLike) -> dict:
    """A run's example test images as `save_examples` wrote them."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
