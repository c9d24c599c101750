"""Uploaded checkpoints: type-checked by content (not by name), size-limited, stored content-addressed in the
workspace so the file a run references never changes under it."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from backend.errors import CheckpointError
from backend.storage.files import atomic_write_bytes
from backend.storage.workspace import resolve_workspace

__all__ = ["MAX_CHECKPOINT_BYTES", "checkpoint_kind", "store_checkpoint_upload"]

MAX_CHECKPOINT_BYTES = 200 * 1024 * 1024  # matches server.maxUploadSize in .streamlit/config.toml
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format
_MAX_HEADER = 100 * 1024 * 1024


def checkpoint_kind(data: bytes) -> str:
    """`safetensors` or `torch` from the bytes themselves; anything else is refused."""
    if len(data) >= 10:
        (header_len,) = struct.unpack("<Q", data[:8])
        if 2 <= header_len <= min(_MAX_HEADER, len(data) - 8) and data[8:9] == b"{":
            try:
                json.loads(data[8 : 8 + header_len])
                return "safetensors"
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
    if data[:4] == _ZIP_MAGIC:
        return "torch"
    raise CheckpointError("the uploaded file is neither a safetensors file nor a torch checkpoint (checked by content)")


def store_checkpoint_upload(data: bytes, workspace: str | os.PathLike | None = None) -> Path:
    """Write uploaded checkpoint bytes to `<workspace>/uploads/<sha256>.<ext>` (atomic) and return the path."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"the upload is {len(data) / 2**20:.0f} MiB; checkpoints are limited to 200 MiB")
    suffix = ".safetensors" if checkpoint_kind(data) == "safetensors" else ".pt"
    folder = resolve_workspace(workspace) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if not path.exists():
        atomic_write_bytes(path, data)
    return path
