"""Storage: the workspace folder and its SQLite database, the annotation store, allowed paths, uploads, the file
helpers (atomic writes, digests) and the cache primitives every cache is built from (keys, whole arrays, rows)."""

from backend.storage.annotations import ARTIFACT, CLEAN, AnnotationStore, ConceptSummary, ImportReport
from backend.storage.cache import CacheKey, cached_array, stored_array
from backend.storage.files import atomic_path, atomic_write_bytes, csv_text, digest_lines
from backend.storage.paths import ROOTS_ENV, allowed_roots, check_allowed_path
from backend.storage.rows import RowCache, file_lock
from backend.storage.uploads import MAX_CHECKPOINT_BYTES, checkpoint_kind, store_checkpoint_upload
from backend.storage.workspace import WORKSPACE_ENV, cache_dir, resolve_workspace

__all__ = [
    "ARTIFACT",
    "AnnotationStore",
    "CLEAN",
    "CacheKey",
    "ConceptSummary",
    "ImportReport",
    "MAX_CHECKPOINT_BYTES",
    "ROOTS_ENV",
    "RowCache",
    "WORKSPACE_ENV",
    "allowed_roots",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "cached_array",
    "check_allowed_path",
    "checkpoint_kind",
    "csv_text",
    "digest_lines",
    "file_lock",
    "resolve_workspace",
    "store_checkpoint_upload",
    "stored_array",
]
