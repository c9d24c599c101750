"""Image decoding on hostile or odd files: decompression bombs are refused from the header, broken files raise a
DatasetError naming them, and every mode a scanner or an export tool may write decodes to 8-bit RGB.

Modes L, RGBA, CMYK (TIFF), I;16 (TIFF), P and a truncated JPEG inside a dataset are covered in test_real.py.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.data import read_image, render_sample
from backend.data import real as real_module
from backend.errors import DatasetError


def _sample_image(size=(48, 40)) -> Image.Image:
    return Image.fromarray(render_sample(0, "test", 0, 1, 64)).resize(size)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """1-bit PNGs of all-zero pixels: a few kB on disk, each declaring a huge image (PIL writes them in < 0.5 s).

    8001 x 8000 is over our limit only; 10000 x 10000 also raises PIL's DecompressionBombWarning; 20000 x 20000
    PIL's DecompressionBombError; all three must give the same kind of error.
    """
    folder = tmp_path_factory.mktemp("bombs")
    paths = {}
    for w, h in ((8001, 8000), (10_000, 10_000), (20_000, 20_000)):
        path = folder / f"bomb_{w}x{h}.png"
        Image.new("1", (w, h)).save(path)
        paths[f"{w}x{h}"] = path
    return paths


@pytest.mark.parametrize("dims", ["8001x8000", "10000x10000", "20000x20000"])
def test_huge_declared_image_is_refused_before_decoding(bombs, dims):
    path = bombs[dims]
    assert path.stat().st_size < 100_000  # small on disk: the danger is in the header
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=r"decompression bomb") as caught:
        read_image(path, 32)
    assert time.perf_counter() - start < 1.0  # nothing was decoded
    message = str(caught.value)
    assert str(path) in message and "64,000,000" in message
    if dims == "8001x8000":
        assert "8001x8000 pixels is over the limit" in message


def test_bomb_check_leaves_the_warning_filters_as_they_were(bombs):
    before = list(warnings.filters)
    with pytest.raises(DatasetError):
        read_image(bombs["10000x10000"], 32)
    assert warnings.filters == before


def test_the_limit_is_on_the_pixel_count(tmp_path, monkeypatch):
    monkeypatch.setattr(real_module, "MAX_IMAGE_PIXELS", 100 * 100)
    _sample_image((100, 100)).save(tmp_path / "at_limit.png")
    _sample_image((101, 100)).save(tmp_path / "over.png")
    assert read_image(tmp_path / "at_limit.png", 16).shape == (16, 16, 3)
    with pytest.raises(DatasetError, match=r"101x100 pixels is over the limit of 10,000"):
        read_image(tmp_path / "over.png", 16)


def test_the_default_limit_fits_a_dermoscope():
    assert real_module.MAX_IMAGE_PIXELS >= 6000 * 4000


def test_extreme_aspect_ratio_within_the_limit_decodes_without_a_huge_intermediate(tmp_path):
    """A 1 x 1,000,000 image is an 8 kB PNG; resizing its short side to 224 before cropping would need 224 x 224 M
    pixels (tens of GB). Only the crop is resampled now."""
    path = tmp_path / "thread.png"
    column = np.zeros((1_000_000, 1), dtype=np.uint8)
    column[500_000 - 2 : 500_000 + 2] = 255  # a white dot in the middle: the centre crop is one source pixel tall
    Image.fromarray(column).save(path)
    assert path.stat().st_size < 50_000
    start = time.perf_counter()
    out = read_image(path, 224)
    assert time.perf_counter() - start < 5.0
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out.min() == 255


def test_resize_and_crop_matches_resizing_the_whole_image_first(tmp_path):
    """The crop-only resampling samples the same positions as the plain resize-then-crop (to rounding)."""
    rng = np.random.default_rng(0)
    for w, h, size in ((90, 70, 32), (70, 90, 64), (33, 200, 17), (300, 301, 224), (5, 5, 40)):
        arr = np.cumsum(rng.integers(0, 8, (h, w, 3)), axis=1).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / "img.png")
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        full = Image.fromarray(arr).resize((new_w, new_h), Image.BILINEAR)
        expected = np.asarray(full.crop((left, top, left + size, top + size)), dtype=np.int16)
        got = read_image(tmp_path / "img.png", size).astype(np.int16)
        assert np.abs(got - expected).max() <= 1


def _broken_png_chunk() -> bytes:
    """A PNG whose IDAT length is halved: PIL reads the rest of the pixel data as a chunk header (SyntaxError)."""
    arr = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    data = bytearray(_encoded(Image.fromarray(arr), "PNG"))
    at = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    data[at : at + 4] = struct.pack(">I", length // 2)
    return bytes(data)


def _tiff_with_text_strip_offsets() -> bytes:
    """A TIFF whose StripOffsets tag is typed ASCII: PIL fails with a TypeError (found by the property tests)."""
    data = bytearray(_encoded(Image.fromarray(np.full((8, 8), 7, np.uint8)), "TIFF"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[ifd : ifd + 2])
    for at in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        if struct.unpack("<H", data[at : at + 2])[0] == 273:  # StripOffsets
            data[at + 2 : at + 4] = struct.pack("<H", 2)  # type: ASCII
    return bytes(data)


def _bad_files() -> dict[str, bytes]:
    png, jpeg = _encoded(_sample_image(), "PNG"), _encoded(_sample_image(), "JPEG")
    return {
        "empty.png": b"",
        "text.png": b"sample_id,label\ns001,1\n",
        "png_signature_only.png": png[:8],
        "png_header_only.png": png[:33],
        "png_half.png": png[: len(png) // 2],
        "png_no_end.png": png[:-12],
        "png_broken_chunk.png": _broken_png_chunk(),
        "jpeg_marker_only.jpg": jpeg[:2],
        "jpeg_header_only.jpg": jpeg[:200],
        "jpeg_half.jpg": jpeg[: len(jpeg) // 2],
        "html.jpg": b"<html><body>404 not found</body></html>",
        "zeros.tif": bytes(4096),
        "tiff_header_only.tif": b"II*\x00\x08\x00\x00\x00",
        "tiff_text_offsets.tif": _tiff_with_text_strip_offsets(),
    }


@pytest.mark.parametrize("name", sorted(_bad_files()))
def test_broken_files_raise_a_dataset_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_bad_files()[name])
    try:
        out = read_image(path, 32)
    except DatasetError as exc:
        assert str(path) in str(exc)
    else:  # some decoders pad a partly missing image; then it must still be a valid image
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if name in ("empty.png", "text.png", "png_broken_chunk.png", "html.jpg", "zeros.tif", "tiff_text_offsets.tif"):
        with pytest.raises(DatasetError, match="cannot read image"):
            read_image(path, 32)


def test_missing_file_and_folder_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png", 32)
    with pytest.raises(DatasetError, match=str(tmp_path)):
        read_image(tmp_path, 32)


def _sixteen_bit_png(path: Path) -> None:
    arr = np.asarray(_sample_image().convert("L"), dtype=np.uint16) * 257
    Image.fromarray(arr).save(path)  # uint16 -> I;16 -> a 16-bit grayscale PNG


def _float_tiff_with_nan(path: Path) -> None:
    arr = np.asarray(_sample_image().convert("L"), dtype=np.float32)
    arr[0, :5], arr[1, :5], arr[2, :5] = np.nan, np.inf, -np.inf
    Image.fromarray(arr).save(path)


@pytest.mark.parametrize(
    "name, write",
    [
        ("grey16.png", _sixteen_bit_png),
        ("cmyk.jpg", lambda p: _sample_image().convert("CMYK").save(p)),
        ("palette.gif", lambda p: _sample_image().save(p)),
        (
            "animated.gif",
            lambda p: _sample_image().save(p, save_all=True, append_images=[Image.new("RGB", (48, 40), "red")] * 3),
        ),
        ("grey_alpha.png", lambda p: _sample_image().convert("LA").save(p)),
        ("bilevel.png", lambda p: _sample_image().convert("1").save(p)),
        ("palette_transparent.png", lambda p: _sample_image().convert("P").save(p, transparency=0)),
        ("ycbcr.tif", lambda p: _sample_image().convert("YCbCr").save(p)),
        ("rgba.webp", lambda p: _sample_image().convert("RGBA").save(p)),
        ("bilevel.bmp", lambda p: _sample_image().convert("1").save(p)),
        ("float_nan.tif", _float_tiff_with_nan),
        ("jpeg_named.png", lambda p: _sample_image().save(p, "JPEG")),
        ("rotated_exif.jpg", lambda p: _sample_image().save(p, exif=_exif_rotated())),
    ],
)
def test_odd_but_valid_images_decode_to_8bit_rgb(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. casting NaN to uint8
        out = read_image(path, 24)
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    if name != "bilevel.png" and name != "bilevel.bmp":
        assert 10 < out.mean() < 245  # not clipped to black or white


def _exif_rotated() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise
    return exif


def test_exif_rotation_is_applied(tmp_path):
    """A wide photo, left half red, right half blue, tagged "rotate 90 degrees clockwise": upright it is tall,
    red on top, and so is the centre crop."""
    image = Image.new("RGB", (64, 32), "blue")
    image.paste("red", (0, 0, 32, 32))
    path = tmp_path / "tagged.jpg"
    image.save(path, exif=_exif_rotated(), quality=95)
    out = read_image(path, 24).astype(int)
    top, bottom = out[2, 12], out[21, 12]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
