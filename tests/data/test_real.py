"""Real-data loaders on small folders the tests build: ISIC 2019/2020 layouts and class-per-folder trees."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.data import open_dataset, read_image, render_sample
from backend.errors import DatasetError

ISIC_2019_COLUMNS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _write_image(path: Path, seed: int, size=(90, 70), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(render_sample(seed, "test", seed, seed % 3, 64)).resize(size)
    image.convert(mode).save(path)


def make_isic_2019(root: Path, n: int = 40, classes=("MEL", "NV", "BKL")) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        name = f"ISIC_{i:07d}"
        label = classes[i % len(classes)]
        _write_image(root / "ISIC_2019_Training_Input" / f"{name}.jpg", i)
        rows.append((name, label))
    lines = ["image," + ",".join(ISIC_2019_COLUMNS)]
    lines += [name + "," + ",".join("1.0" if c == label else "0.0" for c in ISIC_2019_COLUMNS) for name, label in rows]
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    return rows


def test_isic_2019_layout_loads_with_readable_class_names(tmp_path):
    rows = make_isic_2019(tmp_path)
    ds = open_dataset(f"isic:{tmp_path}?size=32")
    assert ds.classes == ("melanoma", "nevus", "benign_keratosis")  # classes without samples (UNK, ...) dropped
    views = [ds.split(s) for s in ("train", "val", "test")]
    assert sum(len(v) for v in views) == len(rows)
    by_id = dict(rows)
    for view in views:
        for i, sid in enumerate(view.sample_ids):
            expected = {"MEL": "melanoma", "NV": "nevus", "BKL": "benign_keratosis"}[by_id[sid]]
            assert ds.classes[view.labels[i]] == expected
    x, y = views[0][0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert views[0].image(0).shape == (32, 32, 3)
    # Splits are a function of the sample id: reopening gives the same assignment.
    again = open_dataset(f"isic:{tmp_path}?size=32")
    assert again.split("train").sample_ids == views[0].sample_ids


def test_isic_can_plant_and_attack_like_the_embedded_benchmark(tmp_path):
    make_isic_2019(tmp_path, n=60)
    ds = open_dataset(f"isic:{tmp_path}?size=48&artifact=ruler&p=0.5&classes=melanoma")
    train = ds.split("train")
    mel = train.labels == ds.classes.index("melanoma")
    assert train.has_artifact[mel].sum() == round(0.5 * mel.sum()) and not train.has_artifact[~mel].any()
    attacked = ds.split("test", "attacked")
    assert attacked.mask(0).any()


def test_isic_2020_target_layout(tmp_path):
    lines = [
        "image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"
    ]
    for i in range(12):
        _write_image(tmp_path / "train" / f"ISIC_{i:07d}.png", i)
        lines.append(
            f"ISIC_{i:07d},IP_1,IL_1,male,45,torso,nevus,{'malignant' if i % 4 == 0 else 'benign'},{int(i % 4 == 0)}"
        )
    (tmp_path / "ISIC_2020_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    ds = open_dataset(f"isic:{tmp_path}?size=32")
    assert ds.classes == ("benign", "malignant")
    total = sum(ds.split(s).class_counts()["malignant"] for s in ("train", "val", "test"))
    assert total == 3


def test_isic_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"isic:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match="ground-truth CSV"):
        open_dataset(f"isic:{tmp_path}")
    make_isic_2019(tmp_path, n=6)
    (tmp_path / "ISIC_2019_Training_Input" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 images listed .* missing .*ISIC_0000003"):
        open_dataset(f"isic:{tmp_path}")
    csv = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    lines = csv.read_text().splitlines()
    lines = [line for line in lines if "ISIC_0000003" not in line]
    lines[2] = lines[2].replace("0.0", "1.0", 1)  # two classes at once
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"not valid one-hot labels \(lines \[3\]"):
        open_dataset(f"isic:{tmp_path}")


def test_corrupt_image_fails_on_access_naming_the_file(tmp_path):
    make_isic_2019(tmp_path, n=30)
    ds = open_dataset(f"isic:{tmp_path}?size=32")
    view = ds.split("train")
    victim = tmp_path / "ISIC_2019_Training_Input" / f"{view.sample_ids[0]}.jpg"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated JPEG
    with pytest.raises(DatasetError, match=view.sample_ids[0]):
        view[0]


def test_image_folder_with_and_without_split_folders(tmp_path):
    flat = tmp_path / "flat"
    for i in range(20):
        _write_image(flat / ("benign" if i % 2 else "malignant") / f"img_{i}.png", i)
    ds = open_dataset(f"folder:{flat}?size=40")
    assert ds.classes == ("benign", "malignant")
    ids = [sid for s in ("train", "val", "test") for sid in ds.split(s).sample_ids]
    assert sorted(ids) == sorted(f"{'benign' if i % 2 else 'malignant'}/img_{i}" for i in range(20))
    assert ds.split("train")[0][0].shape == (3, 40, 40)

    split = tmp_path / "split"
    for s, n in (("train", 6), ("val", 2), ("test", 3)):
        for i in range(n):
            _write_image(split / s / ("a" if i % 2 else "b") / f"{s}{i}.jpg", i)
    ds = open_dataset(f"folder:{split}?size=40")
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [6, 2, 3]
    assert ds.split("val").sample_ids[0].startswith("val/")


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "nevus").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        open_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_image_modes_decode_to_8bit_rgb(tmp_path, mode):
    path = tmp_path / ("img.tif" if mode in ("CMYK", "I;16") else "img.png")
    base = Image.fromarray(render_sample(0, "test", 0, 1, 64))
    if mode == "I;16":
        arr = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(arr).save(path)  # uint16 -> mode I;16
    else:
        base.convert(mode).save(path)
    out = read_image(path, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert 20 < out.mean() < 240  # not clipped to white or black
