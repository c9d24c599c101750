"""The embedded SynthDerm benchmark as a dataset: generated once per workspace, then read from the disk cache."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from backend.data.dataset import ClarcDataset, SplitData
from backend.data.spec import DatasetSpec
from backend.data.synthderm import SYNTHDERM_CLASSES, SYNTHDERM_VERSION, render_sample, sample_label
from backend.storage.files import atomic_path

__all__ = ["SynthDermDataset", "generate_split"]

log = logging.getLogger(__name__)
_MEMORY: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


def generate_split(seed: int, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render `n` samples of a split: uint8 images (n, size, size, 3) and int64 labels (n,)."""
    labels = np.array([sample_label(seed, split, i) for i in range(n)], dtype=np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = render_sample(seed, split, i, int(label), size)
    return images, labels


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached images, or None when the file is missing, unreadable or of another shape (then regenerate)."""
    if not path.exists():
        return None
    try:
        images = np.load(path)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable image cache %s (%s); regenerating", path, exc)
        return None
    if images.shape != shape or images.dtype != np.uint8:
        log.warning("ignoring image cache %s of shape %s; regenerating", path, images.shape)
        return None
    return images


class SynthDermDataset(ClarcDataset):
    """SynthDerm images of one (seed, size, split sizes), cached as .npy files under `cache_root`."""

    def __init__(self, spec: DatasetSpec, cache_root: Path | None) -> None:
        super().__init__(spec, SYNTHDERM_CLASSES)
        self._cache_root = cache_root

    def _images(self, split: str, n: int) -> np.ndarray:
        """All images of a split, generated on first use. The file name says everything they depend on, so datasets
        of any workspace share them in memory; each workspace keeps its own file for the processes it starts."""
        spec = self.spec
        name = f"v{SYNTHDERM_VERSION}-seed{spec.seed}-{spec.size}px-{split}-{n}.npy"
        path = None if self._cache_root is None else self._cache_root / name
        with _LOCK:
            images = _MEMORY.get(name)
            stored = path is None or (images is not None and path.exists())
            if images is None and path is not None:
                images = _read_cache(path, (n, spec.size, spec.size, 3))
                stored = images is not None
            if images is None:
                log.info("generating %d SynthDerm %s images (%d px)", n, split, spec.size)
                images = generate_split(spec.seed, split, n, spec.size)[0]
            if not stored:
                with atomic_path(path) as tmp:  # a crash never leaves a half-written cache file
                    np.save(tmp, images)
            _MEMORY[name] = images
            return images

    def _load_split(self, split: str) -> SplitData:
        n = getattr(self.spec, f"n_{split}")
        ids = tuple(f"{split}_{i:05d}" for i in range(n))
        labels = np.array([sample_label(self.spec.seed, split, i) for i in range(n)], dtype=np.int64)
        return ids, labels, lambda i: self._images(split, n)[i]  # images are rendered on first access
