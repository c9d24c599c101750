"""Cache keys and whole-array caches: what a cached result depends on, named once, and arrays computed once then
read back, so "same config, same result" holds whether the cache is cold or warm."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.storage.files import atomic_path, digest_lines
from backend.storage.workspace import cache_dir

__all__ = ["CacheKey", "cached_array", "stored_array"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheKey:
    """Everything one cached result depends on; its `digest` names the files, so any change of them is a miss.

    `kind` is the cache's folder, `model` the model's fingerprint, `samples` a digest of the sample ids, `version`
    the cache's own (bumped when its numbers change); `extra` holds a cache's further fields (layer, pooling, ...).
    """

    kind: str
    model: str = ""
    dataset: str = ""
    split: str = ""
    view: str = ""
    samples: str = ""
    version: int = 1
    extra: Mapping[str, object] | tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", tuple(sorted(dict(self.extra).items())))  # hashable, order-free

    @classmethod
    def of_view(
        cls, kind: str, model: str, dataset: str, view, *, samples: str | None = None, version: int = 1, **extra
    ) -> CacheKey:
        """The key of a result over a split view (anything with `split`, `view`, `attack_key` and `sample_ids`):
        `samples` defaults to the digest of all the view's ids; the view's planted attack is a field."""
        samples = digest_lines(view.sample_ids) if samples is None else samples
        fields = {"artifact": view.attack_key} | extra
        return cls(kind, model, dataset, view.split, view.view, samples, version, fields)

    def derive(self, kind: str, **extra) -> CacheKey:
        """The key of a result computed from this key's one (the features of cached heatmaps, say)."""
        return dataclasses.replace(self, kind=kind, extra=dict(self.extra) | extra)

    def digest(self) -> str:
        """A short stable name of all fields, the same in every process and run."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def path(self, workspace: str | os.PathLike | None = None, suffix: str = ".npy") -> Path:
        """`<workspace>/cache/<kind>/<digest><suffix>` (the folder is created on demand)."""
        return cache_dir(self.kind, workspace) / f"{self.digest()}{suffix}"


def stored_array(path: Path, shape: tuple[int, ...] | None = None, dtype=None) -> np.ndarray | None:
    """The array stored at `path`; None when it is missing, unreadable or not of `shape` / `dtype` (when given), so
    the caller computes it again."""
    if not path.exists():
        return None
    try:
        array = np.load(path)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("ignoring the unreadable cache file %s (%s); computing it again", path, exc)
        return None
    if (shape is not None and array.shape != tuple(shape)) or (dtype is not None and array.dtype != dtype):
        log.warning("ignoring the cache file %s of shape %s, %s; computing it again", path, array.shape, array.dtype)
        return None
    return array


def cached_array(
    path: Path, compute: Callable[[], np.ndarray], shape: tuple[int, ...] | None = None, dtype=None
) -> np.ndarray:
    """The array stored at `path` (see `stored_array`), else `compute()`'s, written atomically (a crash never
    leaves half a file) so the next call is a file read of exactly these values."""
    found = stored_array(path, shape, dtype)
    if found is not None:
        return found
    array = np.asarray(compute())
    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return array
