"""Real image data: the ISIC challenge layout and generic class-per-folder trees, behind the same interface.

Images are decoded on access, converted to 8-bit RGB, resized (shorter side) and centre-cropped to the spec's size.
Without explicit split folders, samples go to train/val/test (80/10/10) by a hash of their id, so a sample keeps its
split when the dataset grows.
"""

from __future__ import annotations

import csv
import hashlib
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from backend.data.dataset import ClarcDataset, SplitData
from backend.data.decoded import DecodedImages, decoded_key
from backend.data.spec import DatasetSpec
from backend.data.views import SPLITS
from backend.errors import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "ISIC_CLASS_NAMES",
    "MAX_IMAGE_PIXELS",
    "FileDataset",
    "FileRecord",
    "ISICDataset",
    "ImageFolderDataset",
    "dataset_folder",
    "images_under",
    "read_image",
]

# Larger images are refused before decoding: a dermoscope's 6000 x 4000 (24 MP) fits, a decompression bomb does not.
MAX_IMAGE_PIXELS = 64_000_000
# What PIL's format plugins raise on malformed files: OSError (unidentified or truncated files, codec errors),
# SyntaxError (broken PNG chunks), EOFError, ValueError, struct.error (short headers), and TypeError, IndexError,
# KeyError, ArithmeticError on tag values of the wrong type or range (found by fuzzing TIFFs). Each means that the
# file cannot be read.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    struct.error,
    TypeError,
    IndexError,
    KeyError,
    ArithmeticError,
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# ISIC 2019 ground-truth columns, spelled out so that specs can say `classes=melanoma` on any dataset.
ISIC_CLASS_NAMES = {
    "MEL": "melanoma",
    "NV": "nevus",
    "BCC": "basal_cell_carcinoma",
    "AK": "actinic_keratosis",
    "BKL": "benign_keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular_lesion",
    "SCC": "squamous_cell_carcinoma",
    "UNK": "unknown",
}
_SPLIT_SHARES = (0.8, 0.9)  # cumulative: train below 0.8, val below 0.9, test above


@dataclass(frozen=True)
class FileRecord:
    sample_id: str
    path: Path
    label: int
    split: str | None  # None: assigned by hash


def read_image(path: Path, size: int) -> np.ndarray:
    """Decode an image file to uint8 RGB (size, size, 3): shorter side resized to `size`, centre crop.

    Any file that is not a readable image within `MAX_IMAGE_PIXELS` raises DatasetError naming it; the limit is
    checked on the header before any pixel is decoded, so a small file declaring a huge image costs nothing.
    """
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning (its limit may differ from ours) is an error too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DatasetError(
                        f"cannot read image {path}: {w}x{h} pixels is over the limit of {MAX_IMAGE_PIXELS:,} "
                        "(a decompression bomb?)"
                    )
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale: rescale, don't clip
                    # In place (one float64 copy of the image) and NaN / inf (float TIFFs) as 0: casting them to
                    # uint8 is undefined and warns.
                    arr = np.array(img, dtype=np.float64)
                    np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                    peak = arr.max() if arr.size else 0
                    arr /= 65535.0 if peak > 255 else 255.0
                    arr *= 255
                    img = Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8))
                img = img.convert("RGB")
                return _resize_and_crop(img, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DatasetError(
            f"cannot read image {path}: over the limit of {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?): {exc}"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _resize_and_crop(img: Image.Image, size: int) -> np.ndarray:
    """Shorter side resized to `size`, centre crop (size, size); only the crop is resampled, never the whole image.

    The same sampling as resizing the whole image and then cropping (to within one grey level of rounding), but the
    memory is bounded by the output: resizing a 1 x 4,000,000 image (an 8 kB PNG) to a 224-pixel short side first
    would need a 224 x 896,000,000 intermediate.
    """
    w, h = img.size
    if not (w and h):
        raise ValueError(f"the image is empty ({w}x{h} pixels)")
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = w / new_w, h / new_h  # source pixels per resized pixel, per axis
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    img = img.resize((size, size), Image.BILINEAR, box=box)
    return np.asarray(img, dtype=np.uint8).copy()


def _hash_split(sample_id: str) -> str:
    u = int.from_bytes(hashlib.sha1(sample_id.encode()).digest()[:8], "big") / 2**64
    return "train" if u < _SPLIT_SHARES[0] else "val" if u < _SPLIT_SHARES[1] else "test"


class FileDataset(ClarcDataset):
    """A dataset of image files with known labels; subclasses find the records. With `keep_decoded(root)`, each
    image is decoded once into the decoded-image cache under `root` and read back from there afterwards."""

    def __init__(self, spec: DatasetSpec, classes: tuple[str, ...], records: list[FileRecord]) -> None:
        super().__init__(spec, classes)
        self._records = records
        self._decoded_root: Path | None = None

    def keep_decoded(self, root: Path) -> None:
        """Cache decoded images under `root` (splits loaded from now on)."""
        self._decoded_root = root

    def _load_split(self, split: str) -> SplitData:
        chosen = [r for r in self._records if (r.split or _hash_split(r.sample_id)) == split]
        ids = tuple(r.sample_id for r in chosen)
        labels = np.array([r.label for r in chosen], dtype=np.int64)
        paths = [r.path for r in chosen]
        size = self.image_size

        def decode(i: int) -> np.ndarray:
            return read_image(paths[i], size)

        if self._decoded_root is None or not ids:
            return ids, labels, decode
        key = decoded_key(paths, ids, size)
        return ids, labels, DecodedImages(self._decoded_root, key, len(ids), size, decode)


def dataset_folder(spec: DatasetSpec) -> Path:
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    return root


def images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _find_ground_truth(root: Path) -> Path:
    csvs = sorted(root.glob("*.csv"))
    truth = [p for p in csvs if "groundtruth" in p.name.lower().replace("_", "")]
    candidates = truth or csvs
    if len(candidates) != 1:
        found = ", ".join(p.name for p in csvs) or "none"
        raise DatasetError(
            f"{root} needs exactly one ground-truth CSV (ISIC layout: *GroundTruth*.csv); found: {found}"
        )
    return candidates[0]


def _parse_isic_rows(truth: Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Class names and (image name, label) rows from an ISIC 2019 one-hot or ISIC 2020 `target` CSV."""
    with truth.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetError(f"{truth} has no rows")
    columns = list(rows[0].keys())
    id_col = next((c for c in ("image", "image_name", "image_id") if c in columns), None)
    if id_col is None:
        raise DatasetError(f"{truth} has no image column (expected 'image' or 'image_name'); columns: {columns}")
    if "target" in columns and "benign_malignant" in columns:  # ISIC 2020
        class_cols, one_hot = ["benign", "malignant"], False
    else:
        class_cols, one_hot = [c for c in columns if c != id_col], True
    parsed, bad = [], []
    for line, row in enumerate(rows, start=2):
        try:
            if one_hot:
                values = [float(row[c]) for c in class_cols]
                hits = [i for i, v in enumerate(values) if v == 1.0]
                if len(hits) != 1 or any(v not in (0.0, 1.0) for v in values):
                    raise ValueError("not one-hot")
                label = hits[0]
            else:
                label = int(float(row["target"]))
                if label not in (0, 1):
                    raise ValueError("target not 0/1")
        except (TypeError, ValueError, KeyError):
            bad.append(line)
            continue
        parsed.append((row[id_col].strip(), label))
    if bad:
        raise DatasetError(f"{truth}: {len(bad)} rows are not valid one-hot labels (lines {bad[:5]}...)")
    return tuple(class_cols), parsed


class ISICDataset(FileDataset):
    """ISIC 2019/2020 challenge layout: images (in the folder or any sub-folder) + a ground-truth CSV."""

    def __init__(self, spec: DatasetSpec) -> None:
        root = dataset_folder(spec)
        truth = _find_ground_truth(root)
        columns, rows = _parse_isic_rows(truth)
        by_stem = {p.stem: p for p in images_under(root)}
        missing = [name for name, _ in rows if name not in by_stem]
        if missing:
            raise DatasetError(
                f"{len(missing)} images listed in {truth.name} are missing under {root} (first: {missing[:5]})"
            )
        used = sorted({label for _, label in rows})  # drop classes without samples (ISIC 2019's UNK)
        remap = {old: new for new, old in enumerate(used)}
        classes = tuple(ISIC_CLASS_NAMES.get(columns[i], columns[i]) for i in used)
        records = [FileRecord(name, by_stem[name], remap[label], None) for name, label in rows]
        super().__init__(spec, classes, records)


class ImageFolderDataset(FileDataset):
    """One sub-folder per class (`root/<class>/*.png`), optionally below `train/`, `val/`, `test/` folders."""

    def __init__(self, spec: DatasetSpec) -> None:
        root = dataset_folder(spec)
        split_dirs = [s for s in SPLITS if (root / s).is_dir()]
        bases = [(root / s, s) for s in split_dirs] if split_dirs else [(root, None)]
        found: list[tuple[str, Path, str, str | None]] = []
        for base, split in bases:
            for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                for path in images_under(class_dir):
                    found.append((path.relative_to(root).with_suffix("").as_posix(), path, class_dir.name, split))
        if not found:
            raise DatasetError(f"no images found in {root}: expected one sub-folder of images per class")
        classes = tuple(sorted({name for _, _, name, _ in found}))
        records = [FileRecord(sid, path, classes.index(name), split) for sid, path, name, split in found]
        super().__init__(spec, classes, records)
