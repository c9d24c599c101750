"""Storage: the workspace folder and its SQLite database, the annotation store, allowed paths, uploads, and the
file helpers (atomic writes, cache keys) every cache uses."""

from backend.storage.annotations import ARTIFACT, CLEAN, AnnotationStore, ConceptSummary, ImportReport
from backend.storage.files import atomic_path, atomic_write_bytes, cache_key, csv_text, digest_lines
from backend.storage.paths import ROOTS_ENV, allowed_roots, check_allowed_path
from backend.storage.uploads import MAX_CHECKPOINT_BYTES, checkpoint_kind, store_checkpoint_upload
from backend.storage.workspace import WORKSPACE_ENV, cache_dir, resolve_workspace

__all__ = [
    "ARTIFACT",
    "AnnotationStore",
    "CLEAN",
    "ConceptSummary",
    "ImportReport",
    "MAX_CHECKPOINT_BYTES",
    "ROOTS_ENV",
    "WORKSPACE_ENV",
    "allowed_roots",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "cache_key",
    "check_allowed_path",
    "checkpoint_kind",
    "csv_text",
    "digest_lines",
    "resolve_workspace",
    "store_checkpoint_upload",
]
