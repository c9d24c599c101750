"""Where ClArC Studio keeps its state: `./workspace` unless `CLARC_WORKSPACE` or an explicit path says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WORKSPACE_ENV", "resolve_workspace", "cache_dir"]

WORKSPACE_ENV = "CLARC_WORKSPACE"


def resolve_workspace(path: str | os.PathLike | None = None) -> Path:
    """The workspace directory: `path` if given, else `$CLARC_WORKSPACE`, else `./workspace` (created on demand)."""
    chosen = Path(path) if path is not None else Path(os.environ.get(WORKSPACE_ENV) or "workspace")
    chosen = chosen.expanduser().resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def cache_dir(kind: str, workspace: str | os.PathLike | None = None) -> Path:
    """A sub-directory of the workspace cache (`cache/<kind>`), created on demand."""
    path = resolve_workspace(workspace) / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
