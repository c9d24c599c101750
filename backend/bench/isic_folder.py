"""A synthetic folder in the ISIC 2019 challenge layout, for measuring the pipeline at ISIC's scale without ISIC.

`ISIC_2019_Training_Input/ISIC_<7 digits>.jpg` (600x450 JPEGs) and `ISIC_2019_Training_GroundTruth.csv` (one-hot,
with the UNK column), classes in ISIC 2019's proportions. Each image is a SynthDerm lesion of the matching kind
(melanoma, nevus, or keratosis for the other classes) from a pool, flipped, rotated, tinted and resized, so every
file differs and decodes like a real one; a ruler is planted in a share of the melanomas, and `artifact_labels.csv`
lists which training images show it.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image

from backend.data.artifacts import apply_artifact
from backend.data.synthderm import SYNTHDERM_CLASSES, render_sample

__all__ = ["ISIC_COLUMNS", "write_isic_folder"]

ISIC_COLUMNS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
_COUNTS_2019 = (4522, 12875, 3323, 867, 2624, 239, 253, 628, 0)  # ISIC 2019's training images per class
_LOOK = {"MEL": "melanoma", "NV": "nevus"}  # every other class is drawn as a keratosis
_POOL = 32  # renders per SynthDerm class
_RENDER = 128  # pixels of a pool render
_WIDTH, _HEIGHT = 600, 450
_ARTIFACT, _ARTIFACT_P = "ruler", 0.3
_VERSION = 1


def _pool() -> dict[str, list[np.ndarray]]:
    pool = {}
    for label, name in enumerate(SYNTHDERM_CLASSES):
        pool[name] = [render_sample(11, "train", i, label, size=_RENDER) for i in range(_POOL)]
    return pool


_WORKER_POOL: dict[str, list[np.ndarray]] = {}


def _write_one(args: tuple[Path, int, str, bool]) -> None:
    path, index, column, ruler = args
    rng = np.random.default_rng(index)
    look = _LOOK.get(column, "seborrheic_keratosis")
    image = _WORKER_POOL[look][int(rng.integers(_POOL))]
    image = np.rot90(image, int(rng.integers(4)))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    tint = rng.uniform(0.9, 1.1, size=3)
    image = np.clip(image.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    if ruler:
        image, _ = apply_artifact(_ARTIFACT, np.ascontiguousarray(image), rng)
    Image.fromarray(image).resize((_WIDTH, _HEIGHT), Image.BILINEAR).save(path, "JPEG", quality=90)


def _init_worker(pool: dict[str, list[np.ndarray]]) -> None:
    _WORKER_POOL.update(pool)


def write_isic_folder(root: Path, n: int, workers: int = 2) -> dict:
    """Write `n` images and the CSVs under `root` (once per configuration: a marker file says which); returns the
    configuration with `written`: whether it was written now."""
    config = {"images": n, "width": _WIDTH, "height": _HEIGHT, "artifact": _ARTIFACT, "version": _VERSION}
    marker = root / "bench-folder.json"
    labels_path = root / "artifact_labels.csv"
    if marker.is_file() and json.loads(marker.read_text()) == config:
        return config | {"written": False}
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shares = np.array(_COUNTS_2019, dtype=float) / sum(_COUNTS_2019)
    columns = rng.choice(len(ISIC_COLUMNS), size=n, p=shares)
    rulers = (columns == 0) & (rng.random(n) < _ARTIFACT_P)
    names = [f"ISIC_{i:07d}" for i in range(n)]
    tasks = [
        (images / f"{name}.jpg", i, ISIC_COLUMNS[c], bool(r))
        for i, (name, c, r) in enumerate(zip(names, columns, rulers))
    ]
    pool = _pool()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(pool,)) as workers_:
        for _ in workers_.imap_unordered(_write_one, tasks, chunksize=64):
            pass
    with (root / "ISIC_2019_Training_GroundTruth.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *ISIC_COLUMNS])
        for name, c in zip(names, columns):
            writer.writerow([name, *("1.0" if k == c else "0.0" for k in range(len(ISIC_COLUMNS)))])
    with labels_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "label"])
        writer.writerows((name, int(r)) for name, r in zip(names, rulers))
    marker.write_text(json.dumps(config))
    return config | {"written": True}
