"""Export a corrected model: safetensors weights loadable into the plain architecture, and a JSON model card with the
method, its config, the CAV, before/after metrics and the hashes of the data and annotations it was made from."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from backend.concepts import Cav
from backend.correction import CorrectionResult
from backend.data.dataset import ClarcDataset
from backend.evaluation import EvaluationResult
from backend.models import card_path, find_projection, save_checkpoint

__all__ = ["export_corrected", "annotation_hash"]


def annotation_hash(artifact_ids: Collection[str]) -> str:
    """A content hash of an annotation set (order-independent)."""
    return hashlib.sha256("\n".join(sorted(artifact_ids)).encode()).hexdigest()


def export_corrected(
    result: CorrectionResult,
    out: str | os.PathLike,
    *,
    cav: Cav,
    dataset: ClarcDataset,
    before: EvaluationResult,
    after: EvaluationResult,
    artifact_ids: Collection[str] | None = None,
) -> tuple[Path, Path]:
    """Write `<out>` (.safetensors) and its card `<out>.json`; returns both paths. P-ClArC's projection travels in
    the card and is re-attached by `load_checkpoint`; the weights alone load into the plain architecture."""
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out / "model.safetensors"
    model = result.model
    correction = dict(model.meta.training.get("correction", {}))
    correction |= {
        "cav": {
            "kind": cav.kind,
            "layer": cav.layer,
            "pooling": cav.pooling,
            "concept": cav.concept,
            "n_concept": cav.n_concept,
            "n_other": cav.n_other,
            "vector": [float(v) for v in cav.vector],
        },
        "before": before.to_dict(),
        "after": after.to_dict(),
        "history": result.history,
        "seconds": result.seconds,
        "dataset": {"spec": str(dataset.spec), "dataset_id": dataset.dataset_id},
        "annotations_sha256": annotation_hash(artifact_ids) if artifact_ids is not None else None,
        "based_on": model.meta.dataset,
    }
    layer = correction.get("layer", cav.layer)
    projection = find_projection(model.module, layer)
    if projection is not None:
        correction["projection"] = {
            "layer": layer,
            "h": projection.h.cpu().tolist(),
            "offset": projection.offset.cpu().tolist(),
        }
    meta = replace(
        model.meta, training=model.meta.training | {"correction": correction}, metrics=after.to_dict(), created=""
    )
    path = save_checkpoint(model.module, meta, out)
    return path, card_path(path)
