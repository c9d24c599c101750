"""`python -m backend info`: describe a dataset spec and/or a checkpoint."""

from __future__ import annotations

import argparse
import json

from backend.cli.common import write_json
from backend.data import open_dataset
from backend.defaults import DEFAULT_CHECKPOINT
from backend.models import load_checkpoint

__all__ = ["add_info"]


def add_info(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "info",
        parents=[common],
        help="describe a dataset spec and/or a checkpoint (default: both of the default model)",
    )
    p.add_argument("--dataset", help="dataset spec to describe")
    p.add_argument("--checkpoint", help="checkpoint to describe")
    p.add_argument("--json", help="write the description as JSON to this file")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    checkpoint = args.checkpoint or (None if args.dataset else str(DEFAULT_CHECKPOINT))
    payload: dict = {}
    if checkpoint:
        model = load_checkpoint(checkpoint)
        payload["model"] = model.meta.to_dict() | {"sha256": model.sha256, "default_layer": model.default_layer}
    spec = args.dataset or (payload.get("model", {}).get("dataset"))
    if spec:
        payload["dataset"] = open_dataset(spec, args.workspace).describe()
    print(json.dumps(payload, indent=2))
    write_json(args.json, payload)
    return 0
