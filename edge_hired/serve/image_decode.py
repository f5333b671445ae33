"""Pixels from uploaded image bytes: the runtime's own decoding, its errors as HTTP answers.

`runtime.images.decode_image_bytes` is the decoding `edge-hired run` applies to files, so an
image sent to the server becomes exactly the pixels the CLI reads. Too many pixels is a 413;
bytes that are not a complete image, a 400.
"""

from __future__ import annotations

from PIL import Image

from edge_hired.errors import ImageLoadError
from edge_hired.runtime.images import DEFAULT_MAX_PIXELS, ImageTooLargeError, decode_image_bytes
from edge_hired.serve.api_errors import bad_request, too_large
from edge_hired.serve.image_sources import PARAM


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decoded, EXIF-upright RGB image, or an ApiError."""
    try:
        return decode_image_bytes(data, max_pixels)
    except ImageTooLargeError as error:
        raise too_large(f"image: over the decoder's pixel limit: {error}", PARAM) from error
    except ImageLoadError as error:
        raise bad_request(
            f"image: expected a complete image in a format PIL reads ({error})", PARAM
        ) from error
