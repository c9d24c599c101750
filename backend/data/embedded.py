"""The embedded SynthDerm benchmark as a dataset: generated once per workspace, then read from the disk cache."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import numpy as np

from backend.data.dataset import ClarcDataset, SplitData
from backend.data.spec import DatasetSpec
from backend.data.synthderm import SYNTHDERM_CLASSES, SYNTHDERM_VERSION, render_sample, sample_label
from backend.storage import CacheKey, cached_array

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


class SynthDermDataset(ClarcDataset):
    """SynthDerm images of one (seed, size, split sizes), cached as .npy files under `cache_root`."""

    def __init__(self, spec: DatasetSpec, cache_root: Path | None) -> None:
        super().__init__(spec, SYNTHDERM_CLASSES)
        self._cache_root = cache_root

    def _images(self, name: str, split: str, n: int) -> np.ndarray:
        """All images of a split, generated on first use. Their key `name` says everything they depend on, so
        datasets of any workspace share them in memory; each workspace keeps its own file for the processes it
        starts."""
        spec = self.spec
        path = None if self._cache_root is None else self._cache_root / f"{name}.npy"
        with _LOCK:
            images = _MEMORY.get(name)
            if images is not None and (path is None or path in _STORED):
                return images  # every image access comes here: no file system call
            if path is not None and (images is None or not path.exists()):
                render = partial(self._render, split, n) if images is None else partial(np.asarray, images)
                images = cached_array(path, render, (n, spec.size, spec.size, 3), np.uint8)
            elif images is None:
                images = self._render(split, n)
            _MEMORY[name] = images
            if path is not None:
                _STORED.add(path)
            return images

    def _render(self, split: str, n: int) -> np.ndarray:
        """The `n` images of a split, rendered (the slow path a cache saves)."""
        log.info("generating %d SynthDerm %s images (%d px)", n, split, self.spec.size)
        return generate_split(self.spec.seed, split, n, self.spec.size)[0]

    def _load_split(self, split: str) -> SplitData:
        n = getattr(self.spec, f"n_{split}")
        ids = tuple(f"{split}_{i:05d}" for i in range(n))
        labels = np.array([sample_label(self.spec.seed, split, i) for i in range(n)], dtype=np.int64)
        fields = {"seed": self.spec.seed, "size": self.spec.size, "n": n}
        name = CacheKey("synthderm", split=split, version=SYNTHDERM_VERSION, extra=fields).digest()
        return ids, labels, lambda i: self._images(name, split, n)[i]  # images are rendered on first access
