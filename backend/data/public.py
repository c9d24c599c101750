"""The seed paper's other datasets in their published layouts, behind the same interface as ISIC and image folders:

    boneage:/data/rsna-bone-age?bins=5        RSNA Bone Age: train.csv (id,boneage,male) + boneage-training-dataset/
    celeba:/data/celeba?attribute=Blond_Hair  CelebA: img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt
    imagenet:/data/ILSVRC?wnids=n01440764,n01443537   ImageNet (ILSVRC): train/<wnid>/*.JPEG, val/ (+ solution CSV)

Each plants the library's artifacts like any dataset (`?artifact=...&p=...&classes=...`); the seed used `brightness`
(its "white colour") in Bone Age, `timestamp` in ImageNet and `lsb` in ISIC, and CelebA's collar is a real bias.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from backend.data.real import FileDataset, FileRecord, dataset_folder, images_under
from backend.data.spec import DatasetSpec
from backend.errors import DatasetError

__all__ = ["BoneAgeDataset", "CelebADataset", "ImageNetDataset"]

_CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}


def _rows(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{what} {path} is missing")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from exc
    if not rows:
        raise DatasetError(f"{what} {path} has no rows")
    return rows


class BoneAgeDataset(FileDataset):
    """RSNA Bone Age: grayscale hand X-rays, classes = equal-width bins of the bone age in months (`bins`, 5 as the
    seed); images are replicated to three channels, as models expect."""

    def __init__(self, spec: DatasetSpec) -> None:
        root = dataset_folder(spec)
        rows = _rows(root / "train.csv", "Bone Age table")
        if not {"id", "boneage"} <= set(rows[0]):
            raise DatasetError(f"{root / 'train.csv'} needs columns id,boneage(,male); it has {list(rows[0])}")
        images = root / "boneage-training-dataset"
        try:
            ages = np.array([float(r["boneage"]) for r in rows])
        except ValueError as exc:
            raise DatasetError(f"{root / 'train.csv'}: a bone age is not a number ({exc})") from exc
        edges = np.linspace(ages.min(), ages.max(), spec.bins + 1)
        labels = np.clip(np.searchsorted(edges, ages, side="right") - 1, 0, spec.bins - 1)
        classes = tuple(f"age_{edges[k]:.0f}-{edges[k + 1]:.0f}" for k in range(spec.bins))
        records = []
        for row, label in zip(rows, labels):
            path = images / f"{row['id'].strip()}.png"
            if not path.is_file():
                raise DatasetError(f"the X-ray of id {row['id']} is missing: {path}")
            records.append(FileRecord(row["id"].strip(), path, int(label), None))
        super().__init__(spec, classes, records)


class CelebADataset(FileDataset):
    """CelebA faces, two classes: without and with the target `attribute` (+1/-1 in list_attr_celeba.txt); the
    official partition (list_eval_partition.txt) gives the splits."""

    def __init__(self, spec: DatasetSpec) -> None:
        root = dataset_folder(spec)
        names, table = _celeba_attributes(root / "list_attr_celeba.txt")
        if spec.attribute not in names:
            raise DatasetError(f"CelebA has no attribute {spec.attribute!r}; it has {', '.join(names)}")
        column = names.index(spec.attribute)
        partition = _celeba_partition(root / "list_eval_partition.txt")
        images = root / "img_align_celeba"
        records = []
        for name, values in table.items():
            if name not in partition:
                raise DatasetError(f"{name} is in the attribute table but not in list_eval_partition.txt")
            path = images / name
            if not path.is_file():
                raise DatasetError(f"the image {path} listed in list_attr_celeba.txt is missing")
            records.append(FileRecord(Path(name).stem, path, int(values[column] == 1), partition[name]))
        super().__init__(spec, (f"not_{spec.attribute}", spec.attribute), records)


def _celeba_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Attribute names and, per image file, its +1/-1 values (the format: a count line, a header, then rows)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read the CelebA attribute table {path}: {exc}") from exc
    if len(lines) < 3:
        raise DatasetError(f"{path} is not a CelebA attribute table (a count, a header, then rows)")
    names = lines[1].split()
    table = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise DatasetError(f"{path} line {number}: expected an image name and {len(names)} values of +1/-1")
        table[parts[0]] = [int(v) for v in parts[1:]]
    return names, table


def _celeba_partition(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().split("\n")
    except OSError as exc:
        raise DatasetError(f"cannot read the CelebA partition {path}: {exc}") from exc
    partition = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in _CELEBA_SPLITS:
            raise DatasetError(f"{path} line {number}: expected an image name and 0, 1 or 2")
        partition[parts[0]] = _CELEBA_SPLITS[parts[1]]
    return partition


class ImageNetDataset(FileDataset):
    """ILSVRC: `train/<wnid>/*.JPEG` (split into train and val by a hash of the file name) and `val/` as the test
    split (per-class folders, or flat with `LOC_val_solution.csv`); `wnids` picks the classes (all of train/ if
    empty); `LOC_synset_mapping.txt` gives readable names."""

    def __init__(self, spec: DatasetSpec) -> None:
        root = dataset_folder(spec)
        train = root / "train"
        if not train.is_dir():
            raise DatasetError(f"{root} has no train/ folder (ILSVRC layout: train/<wnid>/*.JPEG)")
        present = sorted(p.name for p in train.iterdir() if p.is_dir())
        wnids = list(spec.wnids) or present
        missing = [w for w in wnids if w not in present]
        if missing:
            raise DatasetError(f"no train/ folder for the classes {missing}; there are {len(present)} classes")
        names = _synset_names(root / "LOC_synset_mapping.txt")
        classes = tuple(names.get(w, w) for w in wnids)
        index = {w: k for k, w in enumerate(wnids)}
        records = [
            FileRecord(f"train/{wnid}/{path.stem}", path, index[wnid], _train_or_val(f"train/{wnid}/{path.stem}"))
            for wnid in wnids
            for path in images_under(train / wnid)
        ]
        records += _imagenet_val(root, index)
        super().__init__(spec, classes, records)


def _train_or_val(sample_id: str) -> str:
    """A tenth of ImageNet's training images, chosen by a hash of the id, validate; its val/ folder tests."""
    return "val" if int.from_bytes(hashlib.sha1(sample_id.encode()).digest()[:8], "big") / 2**64 < 0.1 else "train"


def _synset_names(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    names = {}
    for line in path.read_text().splitlines():
        wnid, _, words = line.partition(" ")
        if wnid:
            names[wnid] = words.split(",")[0].strip().replace(" ", "_") or wnid
    return names


def _imagenet_val(root: Path, index: dict[str, int]) -> list[FileRecord]:
    val = root / "val"
    if not val.is_dir():
        return []
    solution = root / "LOC_val_solution.csv"
    if solution.is_file():
        by_stem = {p.stem: p for p in images_under(val)}
        records = []
        for row in _rows(solution, "ImageNet validation solution"):
            wnid = (row.get("PredictionString") or "").split()[:1]
            image = (row.get("ImageId") or "").strip()
            if wnid and wnid[0] in index:
                if image not in by_stem:
                    raise DatasetError(f"the validation image {image} listed in {solution.name} is missing")
                records.append(FileRecord(f"val/{image}", by_stem[image], index[wnid[0]], "test"))
        return records
    return [
        FileRecord(f"val/{wnid}/{path.stem}", path, k, "test")
        for wnid, k in index.items()
        if (val / wnid).is_dir()
        for path in images_under(val / wnid)
    ]
