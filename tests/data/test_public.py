"""The seed paper's other datasets in their published layouts, on mini folders written here: Bone Age, CelebA and
ImageNet load with the right ids, splits and labels, plant the seed's artifacts, and say which file is bad; the whole
loop (fit a CAV, correct, evaluate) runs on a tiny Bone Age and a tiny CelebA folder."""

import csv

import numpy as np
import pytest
from PIL import Image

from backend.concepts import planted_labels
from backend.correction import LoopConfig
from backend.data import SPLITS, open_dataset
from backend.errors import DatasetError
from backend.models import save_checkpoint
from backend.runs import CorrectionJob, run_correction_job
from backend.training import TrainConfig, train_model


def _image(seed: int, mode: str = "RGB", size: tuple[int, int] = (40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    channels = 1 if mode == "L" else 3
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(), mode)


@pytest.fixture(scope="module")
def boneage(tmp_path_factory):
    root = tmp_path_factory.mktemp("boneage")
    (root / "boneage-training-dataset").mkdir()
    ages = np.linspace(6, 228, 60)
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "boneage", "male"])
        for i, age in enumerate(ages):
            writer.writerow([1000 + i, f"{age:.0f}", i % 2 == 0])
            mode = "I;16" if i == 0 else "L"  # X-rays: 8- and 16-bit grayscale
            image = _image(i, mode)
            # brighter bones for older hands, so a model has something to learn
            if mode == "L":
                image = Image.fromarray(np.clip(np.asarray(image) // 3 + int(age / 228 * 160), 0, 255).astype(np.uint8))
            image.save(root / "boneage-training-dataset" / f"{1000 + i}.png")
    return root


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    (root / "img_align_celeba").mkdir()
    names = ["Bald", "Blond_Hair", "Smiling"]
    lines, partition = [str(48), " ".join(names)], []
    for i in range(48):
        name = f"{i + 1:06d}.jpg"
        blond = i % 3 == 0
        pixels = np.asarray(_image(i), dtype=np.uint8).copy()
        if blond:
            pixels[:12] = (230, 200, 90)  # blond hair at the top
        Image.fromarray(pixels).save(root / "img_align_celeba" / name)
        values = ["-1", "1" if blond else "-1", "1" if i % 2 else "-1"]
        lines.append(" ".join([name, *values]))
        partition.append(f"{name} {0 if i < 32 else 1 if i < 40 else 2}")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def _imagenet(root, val_layout: str):
    wnids = ["n01440764", "n01443537", "n02102040"]
    for k, wnid in enumerate(wnids):
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(12):
            _image(k * 100 + i).save(root / "train" / wnid / f"{wnid}_{i}.JPEG")
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn02102040 English springer\n"
    )
    (root / "val").mkdir()
    rows = []
    for k, wnid in enumerate(wnids):
        for i in range(4):
            name = f"ILSVRC2012_val_{k * 10 + i:08d}"
            if val_layout == "folders":
                (root / "val" / wnid).mkdir(exist_ok=True)
                _image(9000 + k * 10 + i).save(root / "val" / wnid / f"{name}.JPEG")
            else:
                _image(9000 + k * 10 + i).save(root / "val" / f"{name}.JPEG")
                rows.append([name, f"{wnid} 10 20 30 40"])
    if val_layout == "csv":
        with open(root / "LOC_val_solution.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([["ImageId", "PredictionString"], *rows])
    return wnids


def test_bone_age_bins_ages_into_classes_and_reads_grayscale_as_rgb(boneage, workspace):
    dataset = open_dataset(f"boneage:{boneage}?size=32", workspace)
    assert dataset.classes == ("age_6-50", "age_50-95", "age_95-139", "age_139-184", "age_184-228")
    ids = [sid for split in SPLITS for sid in dataset.split(split).sample_ids]
    assert sorted(ids) == [str(1000 + i) for i in range(60)]
    counts = [sum(c[name] for c in dataset.describe()["counts"].values()) for name in dataset.classes]
    assert counts == [12] * 5  # equal-width bins of evenly spread ages
    image = dataset.split("train").image(0)
    assert image.shape == (32, 32, 3) and (image[..., 0] == image[..., 1]).all()
    three = open_dataset(f"boneage:{boneage}?size=32&bins=3", workspace)
    assert len(three.classes) == 3 and three.dataset_id != dataset.dataset_id


def test_bone_age_plants_the_seeds_brightness_artifact(boneage, workspace):
    spec = f"boneage:{boneage}?size=32&artifact=brightness&p=0.5&classes=age_95-139"
    dataset = open_dataset(spec, workspace)
    train = dataset.split("train")
    planted = train.has_artifact
    assert planted.any() and set(train.labels[planted]) == {2}
    i = int(np.flatnonzero(planted)[0])
    assert train.image(i).mean() > dataset.split("train", "clean").image(i).mean()


def test_bone_age_bad_inputs_name_the_file(tmp_path, boneage):
    broken = tmp_path / "broken"
    (broken / "boneage-training-dataset").mkdir(parents=True)
    (broken / "train.csv").write_text("id,boneage,male\n1,12,True\n2,30,False\n")
    (broken / "boneage-training-dataset" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="2.png"):
        open_dataset(f"boneage:{broken}")
    _image(2, "L").save(broken / "boneage-training-dataset" / "2.png")
    dataset = open_dataset(f"boneage:{broken}?size=32")
    with pytest.raises(DatasetError, match="cannot read image .*1.png"):
        for split in SPLITS:
            view = dataset.split(split)
            for i in range(len(view)):
                view.image(i)
    (broken / "train.csv").write_text("id,boneage,male\n1,twelve,True\n")
    with pytest.raises(DatasetError, match="not a number"):
        open_dataset(f"boneage:{broken}")


def test_celeba_takes_the_attribute_and_the_official_partition(celeba, workspace):
    dataset = open_dataset(f"celeba:{celeba}?size=32", workspace)
    assert dataset.classes == ("not_Blond_Hair", "Blond_Hair")
    sizes = {split: len(dataset.split(split)) for split in SPLITS}
    assert sizes == {"train": 32, "val": 8, "test": 8}
    train = dataset.split("train")
    assert train.sample_ids[0] == "000001" and train.labels[0] == 1 and train.labels[1] == 0
    smiling = open_dataset(f"celeba:{celeba}?size=32&attribute=Smiling", workspace)
    assert smiling.classes == ("not_Smiling", "Smiling") and smiling.split("train").labels[1] == 1
    with pytest.raises(DatasetError, match="no attribute 'Collar'.*Blond_Hair"):
        open_dataset(f"celeba:{celeba}?attribute=Collar")


def test_celeba_bad_tables_name_the_line(tmp_path, celeba):
    bad = tmp_path / "celeba"
    (bad / "img_align_celeba").mkdir(parents=True)
    (bad / "list_attr_celeba.txt").write_text("1\nBlond_Hair\n000001.jpg 2\n")
    (bad / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(DatasetError, match="line 3"):
        open_dataset(f"celeba:{bad}")
    (bad / "list_attr_celeba.txt").write_text("1\nBlond_Hair\n000001.jpg 1\n")
    with pytest.raises(DatasetError, match="000001.jpg"):  # the image itself is missing
        open_dataset(f"celeba:{bad}")


@pytest.mark.parametrize("val_layout", ["csv", "folders"])
def test_imagenet_reads_the_ilsvrc_layout_with_a_class_subset(tmp_path, val_layout):
    wnids = _imagenet(tmp_path, val_layout)
    dataset = open_dataset(f"imagenet:{tmp_path}?size=32&wnids={wnids[0]},{wnids[2]}")
    assert dataset.classes == ("tench", "English_springer")
    test = dataset.split("test")
    assert len(test) == 8 and sorted(set(test.labels)) == [0, 1]
    train, val = dataset.split("train"), dataset.split("val")
    assert len(train) + len(val) == 24 and all(sid.startswith("train/") for sid in train.sample_ids)
    planted = open_dataset(f"imagenet:{tmp_path}?size=32&wnids={wnids[0]}&artifact=timestamp&classes=tench")
    assert planted.split("train").has_artifact.any()
    with pytest.raises(DatasetError, match="n99999999"):
        open_dataset(f"imagenet:{tmp_path}?wnids=n99999999")


def _loop(spec: str, workspace, tmp_path) -> dict:
    trained = train_model(TrainConfig(dataset=spec, epochs=2, device="cpu", batch_size=16), workspace=workspace)
    checkpoint = save_checkpoint(trained.model.module, trained.model.meta, tmp_path / "model.safetensors")
    job = CorrectionJob(
        out=str(tmp_path / "run"), checkpoint=str(checkpoint), dataset=spec, loop=LoopConfig(epochs=2, device="cpu")
    )
    return run_correction_job(job, workspace=workspace).to_dict()  # the stored form


def test_the_whole_loop_on_a_tiny_bone_age(boneage, workspace, tmp_path):
    spec = f"boneage:{boneage}?size=32&artifact=brightness&p=0.6&classes=age_95-139"
    summary = _loop(spec, workspace, tmp_path)
    assert summary["cav"]["attacked_class"] == "age_95-139" and summary["after"]["attack_source"] == "planted"
    assert len(summary["history"]) == 2 and summary["after"]["tcav_sensitivity"] is not None


def test_the_whole_loop_on_a_tiny_celeba(celeba, workspace, tmp_path):
    spec = f"celeba:{celeba}?size=32&artifact=timestamp&p=0.6&classes=Blond_Hair"
    summary = _loop(spec, workspace, tmp_path)
    dataset = open_dataset(spec, workspace)
    assert summary["cav"]["n_concept"] == sum(planted_labels(dataset).values())
    assert summary["after"]["clean_acc_per_class"].keys() == {"not_Blond_Hair", "Blond_Hair"}
