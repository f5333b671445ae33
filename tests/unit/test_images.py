"""Tests of `edge_hired.runtime.images.load_image`: every failure is a one-line ImageLoadError
naming the file, and every odd-but-valid image becomes RGB with the right pixel values."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_hired.errors import ImageLoadError, InvalidArgumentError
from edge_hired.runtime import images
from edge_hired.runtime.images import load_image, to_rgb

WHITE = (255, 255, 255)


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    """Save `image` to `path` and return the path."""
    image.save(path, **kwargs)
    return path


def _pixels(image: Image.Image) -> np.ndarray:
    """The image as an (H, W, 3) uint8 array, asserting it is RGB."""
    assert image.mode == "RGB"
    return np.asarray(image)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR announces width x height but carries no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _assert_load_error(path: Path, *words: str, **kwargs: object) -> str:
    """Assert load_image(path) raises a one-line ImageLoadError naming the file; return it."""
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    _assert_load_error(tmp_path / "nope.png", "no such file")


def test_path_below_a_file(tmp_path: Path) -> None:
    parent = _save(Image.new("RGB", (2, 2)), tmp_path / "file.png")
    _assert_load_error(parent / "child.png", "no such file")


def test_os_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "flaky.png")

    def io_error(*args: object, **kwargs: object) -> Image.Image:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(images.Image, "open", io_error)
    _assert_load_error(path, "readable", "Input/output error")


def test_directory(tmp_path: Path) -> None:
    _assert_load_error(tmp_path, "directory")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.touch()
    _assert_load_error(empty, "empty")


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    _assert_load_error(text, "image format")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    full = _save(noise, tmp_path / f"full.{fmt.lower()}", format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    _assert_load_error(cut, "truncated")


def test_more_pixels_than_max(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "small.png")
    _assert_load_error(path, "at most 399 pixels", "20x20", max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)


def test_size_is_checked_from_header_before_decoding(tmp_path: Path) -> None:
    # No pixel data at all: decoding would fail as truncated, the header check must come first.
    forged = _png_header_only(tmp_path / "forged.png", 9000, 8000)
    _assert_load_error(forged, "at most 64000000 pixels", "9000x8000")


def test_pil_decompression_bomb_error(tmp_path: Path) -> None:
    forged = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    _assert_load_error(forged, "pixels", max_pixels=10**12)


def test_pil_decompression_bomb_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _save(Image.new("RGB", (40, 30)), tmp_path / "warned.png")  # 1200 > 1000, < 2000
    _assert_load_error(path, "pixels")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        _assert_load_error(path, "readable")
    finally:
        path.chmod(0o644)


def test_permission_error_from_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "locked.png")

    def deny(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.Image, "open", deny)
    _assert_load_error(path, "readable", "permission denied")


def test_max_pixels_must_be_positive(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "ok.png")
    with pytest.raises(InvalidArgumentError, match="max_pixels"):
        load_image(path, max_pixels=0)


# ---------------------------------------------------------------- odd but valid images


def test_accepts_str_and_returns_decoded_copy(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (3, 2), (10, 20, 30)), tmp_path / "plain.png")
    image = load_image(str(path))
    path.unlink()  # fully decoded: the file is no longer needed
    assert isinstance(image, Image.Image)
    assert _pixels(image).tolist() == [[[10, 20, 30]] * 3] * 2


def test_one_by_one(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "dot.png")
    assert _pixels(load_image(path)).tolist() == [[[1, 2, 3]]]


@pytest.mark.parametrize("size", [(4000, 3), (3, 4000)])
def test_long_strips(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _save(Image.new("RGB", size, (7, 8, 9)), tmp_path / "strip.png")
    image = load_image(path)
    assert image.size == size
    assert (_pixels(image) == (7, 8, 9)).all()


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    data = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [255, 0, 0, 128]]], dtype=np.uint8)
    path = _save(Image.fromarray(data), tmp_path / "rgba.png")
    pixels = _pixels(load_image(path))
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == (255, 0, 0)
    red, green, blue = pixels[0, 2].tolist()  # half-transparent red over white
    assert red == 255 and 125 <= green <= 129 and green == blue


def test_la_composited_on_white(tmp_path: Path) -> None:
    data = np.array([[[100, 0], [100, 255]]], dtype=np.uint8)
    path = _save(Image.fromarray(data, mode="LA"), tmp_path / "la.png")
    pixels = _pixels(load_image(path))
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == (100, 100, 100)


def test_cmyk(tmp_path: Path) -> None:
    image = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 0))
    path = _save(image, tmp_path / "cmyk.tif")
    pixels = _pixels(load_image(path))
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == (0, 255, 255)


def test_sixteen_bit_grayscale_png(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "gray16.png")
    pixels = _pixels(load_image(path))
    assert pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_mode_i_uses_the_sixteen_bit_range(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 70000, -5]], dtype=np.int32)
    path = _save(Image.fromarray(values), tmp_path / "gray32.tif")
    assert Image.open(path).mode == "I"
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 128, 255, 255, 0]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=65535))
def test_sixteen_bit_scaling_rounds_to_nearest(value: int) -> None:
    image = Image.fromarray(np.array([[value]], dtype=np.uint16))
    assert _pixels(to_rgb(image))[0, 0, 0] == int(np.floor(value * 255 / 65535 + 0.5))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(tmp_path: Path, fmt: str) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((1, 0), 1)
    path = _save(image, tmp_path / f"palette.{fmt.lower()}", format=fmt, transparency=0)
    pixels = _pixels(load_image(path))
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == (255, 0, 0)


def test_palette_without_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (1, 1))
    image.putpalette([0, 128, 255])
    path = _save(image, tmp_path / "palette.png")
    assert tuple(_pixels(load_image(path))[0, 0]) == (0, 128, 255)


def test_one_bit(tmp_path: Path) -> None:
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    path = _save(image, tmp_path / "bits.png")
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 255]


def test_float_in_unit_range_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(values), tmp_path / "unit.tif")
    assert Image.open(path).mode == "F"
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


def test_float_beyond_unit_range_is_clipped(tmp_path: Path) -> None:
    values = np.array([[-3.0, 2.0, 100.4, 300.0, np.nan]], dtype=np.float32)
    path = _save(Image.fromarray(values), tmp_path / "wide.tif")
    assert _pixels(load_image(path))[0, :, 0].tolist() == [0, 2, 100, 255, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = _save(stored, tmp_path / "rotated.jpg", quality=95, exif=exif)
    pixels = _pixels(load_image(path))
    assert pixels.shape == (64, 32, 3)
    assert pixels[8, 16, 0] > 200 and pixels[8, 16, 2] < 50  # left edge is now on top
    assert pixels[56, 16, 2] > 200 and pixels[56, 16, 0] < 50


# ---------------------------------------------------------------- bytes (the server's uploads)


@pytest.mark.parametrize(
    ("mode", "fmt", "exif_orientation"),
    [("RGBA", "PNG", None), ("P", "GIF", None), ("I;16", "PNG", None), ("RGB", "JPEG", 6)],
)
def test_bytes_decode_to_the_pixels_of_the_file(
    tmp_path: Path, mode: str, fmt: str, exif_orientation: int | None
) -> None:
    """One decoder: `decode_image_bytes(file bytes)` is `load_image(file)`, pixel for pixel."""
    rng = np.random.default_rng(4)
    rgba = Image.fromarray(rng.integers(0, 256, (7, 11, 4), dtype=np.uint8), "RGBA")
    picture = rgba.convert(mode) if mode != "I;16" else Image.new("I;16", (11, 7), 40000)
    extra = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        extra["exif"] = exif
    path = _save(picture, tmp_path / f"image.{fmt.lower()}", format=fmt, **extra)
    from_bytes = images.decode_image_bytes(path.read_bytes())
    np.testing.assert_array_equal(_pixels(from_bytes), _pixels(load_image(path)))


def test_bytes_over_the_pixel_limit_are_too_large_and_garbage_is_a_load_error() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, format="PNG")
    with pytest.raises(images.ImageTooLargeError, match="40x30"):
        images.decode_image_bytes(buffer.getvalue(), max_pixels=1000)
    with pytest.raises(ImageLoadError, match="image format") as info:
        images.decode_image_bytes(b"not an image at all")
    assert not isinstance(info.value, images.ImageTooLargeError)
