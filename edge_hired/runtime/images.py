"""Load any image file a user points at as a fully decoded, upright RGB `PIL.Image`.

The VLM processors expect 8-bit RGB. Real files are messier: alpha channels, palettes, CMYK,
16-bit or float grayscale, EXIF rotation, truncated downloads, decompression bombs. This module
turns all of them into RGB with the right pixel values, or raises a one-line `ImageLoadError` that
names the file and says what was expected, before any large allocation happens. Bytes in
memory (the server's uploads) take the same path (`decode_image_bytes`), so an image sent to the
server becomes exactly the pixels `run` reads from the same file.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_hired.errors import ImageLoadError, InvalidArgumentError, expected

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageTooLargeError",
    "decode_image_bytes",
    "load_image",
    "to_rgb",
]

DEFAULT_MAX_PIXELS = 64_000_000
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
_KEYED_TRANSPARENCY_MODES = frozenset({"P", "L", "RGB", "1"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# What PIL raises on broken or truncated pixel data, depending on the format plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class ImageTooLargeError(ImageLoadError):
    """More pixels than allowed (the server answers it with a 413, not a 400)."""


def _fail(
    what: Path | str, expectation: str, got: object, kind: type = ImageLoadError
) -> ImageLoadError:
    """An ImageLoadError whose message names the file (or says "image" for bytes)."""
    label = what if isinstance(what, str) else f"image '{what}'"
    return kind(expected(label, expectation, got))


def _check_file(path: Path) -> None:
    """Reject a missing path, a directory or an empty file before PIL sees it."""
    if not path.exists():
        raise _fail(path, "an existing image file", "no such file")
    if path.is_dir():
        raise _fail(path, "an image file", "a directory")
    if path.stat().st_size == 0:
        raise _fail(path, "an image file", "an empty (0-byte) file")


def _check_pixels(what: Path | str, size: tuple[int, int], max_pixels: int) -> None:
    """Reject an image whose header announces more than `max_pixels` pixels."""
    width, height = size
    if width * height > max_pixels:
        got = f"{width}x{height} = {width * height} pixels"
        raise _fail(what, f"at most {max_pixels} pixels", got, ImageTooLargeError)


@contextmanager
def _bomb_warnings_as_errors() -> Iterator[None]:
    """Make PIL's DecompressionBombWarning an exception inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        return image.copy()


def _open_decoded(source: Path | BinaryIO, what: Path | str, max_pixels: int) -> Image.Image:
    """Open, size-check, fully decode and orient the image (still in its own mode)."""
    with _bomb_warnings_as_errors(), Image.open(source) as image:
        _check_pixels(what, image.size, max_pixels)
        image.load()
        return _upright(image)


def _translate(path: Path | str, error: BaseException, max_pixels: int) -> ImageLoadError:
    """Turn what PIL or the OS raised into a one-line ImageLoadError."""
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        limit = f"at most {max_pixels} pixels (and within PIL's bomb limit)"
        return _fail(path, limit, str(error), ImageTooLargeError)
    if isinstance(error, PermissionError):
        return _fail(path, "a readable file", "permission denied")
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return _fail(path, "an existing image file", "no such file")
    if isinstance(error, IsADirectoryError):
        return _fail(path, "an image file", "a directory")
    if isinstance(error, UnidentifiedImageError):
        return _fail(path, "a file in an image format PIL can read", "unrecognised data")
    if isinstance(error, OSError) and error.errno is not None:  # the OS failed, not the decoder
        return _fail(path, "a readable file", error.strerror)
    return _fail(path, "a complete, valid image", f"truncated or corrupt data ({error})")


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load `path` as a fully decoded, EXIF-upright RGB image.

    Raises ImageLoadError for a missing, unreadable, empty, non-image, truncated or too large
    file (more than `max_pixels`, checked from the header before decoding).
    """
    _check_limit(max_pixels)
    file = Path(path)
    try:
        _check_file(file)
        image = _open_decoded(file, file, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_DECODE_ERRORS) as error:
        raise _translate(file, error, max_pixels) from error
    return _rgb(image, file)


def decode_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Image bytes in memory as a fully decoded, EXIF-upright RGB image (as `load_image`).

    Raises ImageTooLargeError over `max_pixels` (or PIL's bomb limit), ImageLoadError for bytes
    that are not a complete image or a mode without an RGB conversion.
    """
    _check_limit(max_pixels)
    try:
        image = _open_decoded(io.BytesIO(data), "image", max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_DECODE_ERRORS) as error:
        raise _translate("image", error, max_pixels) from error
    return _rgb(image, "image")


def _check_limit(max_pixels: int) -> None:
    if max_pixels <= 0:
        raise InvalidArgumentError(expected("max_pixels", "a positive integer", max_pixels))


def _rgb(image: Image.Image, what: Path | str) -> Image.Image:
    try:
        return to_rgb(image)
    except ValueError as error:
        raise _fail(what, "an image mode that converts to RGB", image.mode) from error


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten an image with (possibly premultiplied) alpha onto a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16-bit grayscale 0..65535 to 0..255 by rounding (65535 -> 255, 32768 -> 128)."""
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    eight_bit = ((values + 128) // 257).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")


def _float_to_rgb(image: Image.Image) -> Image.Image:
    """Map float grayscale to 8 bits: data within 0..1 is scaled by 255, other data clipped."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        values = values * 255.0
    eight_bit = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")


def _has_keyed_transparency(image: Image.Image) -> bool:
    """True for palette / gray / RGB images with a transparent colour (PNG tRNS, GIF)."""
    return image.mode in _KEYED_TRANSPARENCY_MODES and "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an image of any PIL mode to 8-bit RGB with faithful pixel values.

    Transparency is composited onto white; an RGB image without transparency is returned as is.
    """
    if image.mode in _ALPHA_MODES or _has_keyed_transparency(image):
        return _composite_on_white(image)
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(image)
    if image.mode == "F":
        return _float_to_rgb(image)
    return image.convert("RGB")
