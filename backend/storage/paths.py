"""Which files a served dashboard may open: paths typed into the app (checkpoints, dataset folders) must resolve,
symlinks and `..` included, inside the allowed roots, so a remote user cannot read the server's other files."""

from __future__ import annotations

import os
from pathlib import Path

from backend.defaults import ASSETS_DIR
from backend.errors import ConfigError
from backend.storage.workspace import resolve_workspace

__all__ = ["ROOTS_ENV", "allowed_roots", "check_allowed_path"]

ROOTS_ENV = "CLARC_DATA_ROOTS"


def allowed_roots(workspace: str | os.PathLike | None = None) -> list[Path]:
    """The workspace, the shipped assets, the working directory and every folder in `$CLARC_DATA_ROOTS`
    (separated by `os.pathsep`), resolved."""
    extra = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [resolve_workspace(workspace), ASSETS_DIR, Path.cwd(), *map(Path, extra)]
    return list(dict.fromkeys(Path(os.path.realpath(Path(r).expanduser())) for r in roots))


def check_allowed_path(path: str | os.PathLike, what: str, workspace: str | os.PathLike | None = None) -> Path:
    """`path` resolved (symlinks followed) if it lies inside an allowed root; else a ConfigError saying how to
    allow it."""
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    roots = allowed_roots(workspace)
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ConfigError(
            f"the {what} {path} is outside the folders this dashboard may read; add its folder to "
            f"{ROOTS_ENV} (allowed now: {', '.join(str(r) for r in roots)})"
        )
    return resolved
