"""The embedded SynthDerm benchmark as a dataset: generated once per workspace, then read from the disk cache."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from backend.data.dataset import ClarcDataset, SplitData
from backend.data.spec import DatasetSpec
from backend.data.synthderm import SYNTHDERM_CLASSES, SYNTHDERM_VERSION, render_sample, sample_label
from backend.storage.files import atomic_path

__all__ = ["SynthDermDataset", "generate_split"]

log = logging.getLogger(__name__)
_MEMORY: dict[str, np.ndarray] = {}  # rendered splits by cache file name
_STORED: set[Path] = set()  # cache files this process has written or read
_LOCK = threading.Lock()
_PARALLEL_FROM = 256  # images from which a split is rendered by helper processes


def generate_split(seed: int, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render `n` samples of a split: uint8 images (n, size, size, 3) and int64 labels (n,). A large split is
    rendered by forked helper processes beside this one, one share per core (the same pixels: each image is a
    pure function of its index); should a helper fail, this process renders its share itself."""
    labels = np.array([sample_label(seed, split, i) for i in range(n)], dtype=np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    shares = np.array_split(np.arange(n), _helpers(n) + 1)
    if len(shares) == 1:
        images[:] = _render(seed, split, 0, labels, size)
        return images, labels
    with ProcessPoolExecutor(len(shares) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_render, seed, split, int(s[0]), labels[s], size) for s in shares[1:]]
        images[shares[0]] = _render(seed, split, 0, labels[shares[0]], size)
        for share, future in zip(shares[1:], futures):
            try:
                images[share] = future.result()
            except (BrokenProcessPool, OSError) as exc:
                log.warning("a rendering helper failed (%s); rendering its share here", exc)
                images[share] = _render(seed, split, int(share[0]), labels[share], size)
    return images, labels


def _helpers(n: int) -> int:
    """Forked helper processes for rendering `n` images: none for a small split (a fork costs more than it saves)
    or where forking is unsafe (it is only safe on Linux), else one per further core, up to three."""
    if n < _PARALLEL_FROM or sys.platform != "linux":
        return 0
    return min(len(os.sched_getaffinity(0)), 4) - 1


def _render(seed: int, split: str, start: int, labels: np.ndarray, size: int) -> np.ndarray:
    """Images start .. start + len(labels) - 1 of a split."""
    return np.stack([render_sample(seed, split, start + i, int(label), size) for i, label in enumerate(labels)])


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
            if images is not None and (path is None or path in _STORED):
                return images  # every image access comes here: no file system call
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
            if path is not None:
                _STORED.add(path)
            return images

    def _load_split(self, split: str) -> SplitData:
        n = getattr(self.spec, f"n_{split}")
        ids = tuple(f"{split}_{i:05d}" for i in range(n))
        labels = np.array([sample_label(self.spec.seed, split, i) for i in range(n)], dtype=np.int64)
        return ids, labels, lambda i: self._images(split, n)[i]  # images are rendered on first access
