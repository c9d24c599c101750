"""`python -m backend info`: describe a dataset spec and/or a checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass

from backend.cli.common import write_json
from backend.cli.registry import command
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint
from backend.options import CommonOptions, DatasetOption, JsonOutput, ModelOption

__all__ = ["InfoOptions"]


@dataclass(frozen=True, kw_only=True)
class InfoOptions(CommonOptions, ModelOption, DatasetOption, JsonOutput):
    """describe a dataset spec and/or a checkpoint (default: both of the default model)"""


@command("info", InfoOptions)
def _run_info(opts: InfoOptions) -> int:
    checkpoint = opts.checkpoint or (None if opts.dataset else str(DEFAULT_CHECKPOINT))
    payload: dict = {}
    if checkpoint:
        model = load_checkpoint(checkpoint)
        payload["model"] = model.meta.to_dict() | {"sha256": model.sha256, "default_layer": model.default_layer}
    spec = opts.dataset or (payload.get("model", {}).get("dataset"))
    if spec:
        payload["dataset"] = open_dataset(spec, opts.workspace).describe()
    print(json.dumps(payload, indent=2))
    write_json(opts.json, payload)
    return 0
