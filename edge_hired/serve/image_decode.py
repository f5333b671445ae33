"""Pixels from image bytes, with the same checks and conversions `edge-hired run` applies.

`to_rgb` is the runtime's own conversion, so an image sent to the server becomes exactly the
pixels the CLI reads from the same file. Too many pixels is a 413; bytes that are not a
complete image, a 400.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from edge_hired.runtime.images import DEFAULT_MAX_PIXELS, to_rgb
from edge_hired.serve.api_errors import bad_request, too_large
from edge_hired.serve.image_sources import PARAM

_BROKEN = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decoded, EXIF-upright RGB image, or an ApiError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_pixels(image.size, max_pixels)
                image.load()
                upright = _upright(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise too_large(f"image: over the decoder's pixel limit ({error})", PARAM) from error
    except _BROKEN as error:
        raise bad_request(
            "image: expected a complete image in a format PIL reads", PARAM
        ) from error
    try:
        return to_rgb(upright)
    except ValueError as error:
        raise bad_request(f"image: mode {upright.mode} does not convert to RGB", PARAM) from error


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise too_large(
            f"image: {width}x{height} is over the decoder's limit of {max_pixels} pixels", PARAM
        )


def _upright(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; a malformed EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except _BROKEN:
        return image.copy()
