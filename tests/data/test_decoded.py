"""The decoded-image cache of file datasets: each image decoded once, the same pixels back, invalidated when a file
changes, corrupt files still an error, a damaged cache rebuilt."""

import os

import numpy as np
import pytest
from PIL import Image

import backend.data.real as real
from backend.data import open_dataset
from backend.errors import DatasetError


def _folder(root, n=4, size=(90, 70)):
    rng = np.random.default_rng(0)
    for name in ("nevus", "melanoma"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def decodes(monkeypatch):
    """How many times a file was decoded (the real decoder, counted)."""
    calls = []
    original = real.read_image

    def counted(path, size):
        calls.append(path)
        return original(path, size)

    monkeypatch.setattr(real, "read_image", counted)
    return calls


def _all_images(spec, workspace):
    dataset = open_dataset(spec, workspace)
    out = {}
    for split in ("train", "val", "test"):
        view = dataset.split(split)
        out |= {sid: view.image(i) for i, sid in enumerate(view.sample_ids)}
    return out


def test_each_image_is_decoded_once_and_read_back_identical(tmp_path, decodes):
    folder = _folder(tmp_path / "data")
    spec, ws = f"folder:{folder}?size=32", tmp_path / "ws"
    first = _all_images(spec, ws)
    assert len(decodes) == 8
    again = _all_images(spec, ws)  # a new dataset object, as after a restart
    assert len(decodes) == 8, "a cached image was decoded again"
    for sid, image in first.items():
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
        np.testing.assert_array_equal(again[sid], image)
        np.testing.assert_array_equal(image, real.read_image(folder / f"{sid}.jpg", 32))
    assert list((ws / "cache" / "decoded").glob("*.npy"))
    _all_images(f"folder:{folder}?size=48", ws)  # another size is another cache
    assert len(decodes) == 8 + 8 + 8  # (the assert_array_equal reads above decoded 8)


def test_a_changed_file_is_decoded_anew(tmp_path, decodes):
    folder = _folder(tmp_path / "data")
    spec, ws = f"folder:{folder}?size=32", tmp_path / "ws"
    before = _all_images(spec, ws)
    Image.new("RGB", (90, 70), (250, 10, 10)).save(folder / "melanoma" / "2.jpg", quality=90)
    os.utime(folder / "melanoma" / "2.jpg", ns=(1, 1_000_000_000))  # a different modification time for sure
    after = _all_images(spec, ws)
    assert after["melanoma/2"].mean(axis=(0, 1))[0] > 200  # the new red image, not the cached noise
    assert not np.array_equal(after["melanoma/2"], before["melanoma/2"])
    np.testing.assert_array_equal(after["nevus/0"], before["nevus/0"])


def test_a_corrupt_file_stays_an_error_and_is_never_cached(tmp_path):
    folder = _folder(tmp_path / "data")
    (folder / "nevus" / "1.jpg").write_bytes(b"not a jpeg")
    dataset = open_dataset(f"folder:{folder}?size=32", tmp_path / "ws")
    for split in ("train", "val", "test"):
        view = dataset.split(split)
        if "nevus/1" in view.sample_ids:
            i = view.sample_ids.index("nevus/1")
            for _ in range(2):
                with pytest.raises(DatasetError, match="cannot read image"):
                    view.image(i)


def test_a_damaged_cache_file_is_rebuilt(tmp_path, decodes):
    folder = _folder(tmp_path / "data")
    spec, ws = f"folder:{folder}?size=32", tmp_path / "ws"
    first = _all_images(spec, ws)
    for path in (ws / "cache" / "decoded").glob("*.npy"):
        path.write_bytes(b"garbage")
    again = _all_images(spec, ws)
    assert len(decodes) == 16  # decoded anew, not read from garbage
    for sid, image in first.items():
        np.testing.assert_array_equal(again[sid], image)
