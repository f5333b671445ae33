"""SmolVLM2 / Idefics3 tiling, as `SmolVLMImageProcessorPil` computes it.

The processor resizes the image twice, both times squashing the whole picture (no crop, no
padding): first so its longest edge is `size.longest_edge` (the family's token knob; the short
edge is `int(...)` of the scaled length, bumped to even, and everything is capped at 4096 px),
then up to whole tiles of `max_image_size` px (the long edge rounded up to a multiple of the
tile, the short edge recomputed from the aspect ratio and rounded up likewise). A canvas larger
than one tile is cut into rows x cols tiles, row-major, and a global image (the canvas squashed
to one tile) is appended last; otherwise the canvas itself is the only image. Re-derived from
transformers 5.23's PIL processor (`_preprocess` / `resize_for_vision_encoder`).
"""

from __future__ import annotations

import math

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.tiles import TileGeometry, check_image_size, check_tiling

MAX_IMAGE_SIDE = 4096  # the processor's absolute cap on either edge after the first resize


def longest_edge_size(image_size: tuple[int, int], longest_edge: int) -> tuple[int, int]:
    """(h, w) after the first resize: longest edge -> longest_edge, short edge made even."""
    height, width = image_size
    aspect = width / height
    if width >= height:
        width, height = longest_edge, int(longest_edge / aspect)
        height += height % 2
    else:
        height, width = longest_edge, int(longest_edge * aspect)
        width += width % 2
    return _below_cap(max(height, 1), max(width, 1))


def _below_cap(height: int, width: int) -> tuple[int, int]:
    """Scale a size whose long edge exceeds MAX_IMAGE_SIDE down to it (aspect kept, floored)."""
    aspect = width / height
    if width >= height and width > MAX_IMAGE_SIDE:
        width, height = MAX_IMAGE_SIDE, int(MAX_IMAGE_SIDE / aspect)
    elif height > width and height > MAX_IMAGE_SIDE:
        height, width = MAX_IMAGE_SIDE, int(MAX_IMAGE_SIDE * aspect)
    return max(height, 1), max(width, 1)


def tile_canvas(size: tuple[int, int], tile_size: int) -> tuple[int, int]:
    """(h, w) after the second resize: both edges whole multiples of the tile."""
    height, width = size
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile_size) * tile_size
        height = math.ceil(int(width / aspect) / tile_size) * tile_size
    else:
        height = math.ceil(height / tile_size) * tile_size
        width = math.ceil(int(height * aspect) / tile_size) * tile_size
    return height, width


def smolvlm_geometry(
    image_size: tuple[int, int],
    tile_size: int = 512,
    patch_size: int = 16,
    scale_factor: int = 4,
    longest_edge: int = 2048,
    split: bool = True,
) -> TileGeometry:
    """Geometry of a SmolVLM image of size (height, width).

    `tile_size` is `max_image_size.longest_edge`, `longest_edge` is `size.longest_edge`,
    `split` is `do_image_splitting`; without splitting the image is squashed to one tile.
    """
    size = check_image_size(image_size)
    check_tiling(tile_size, patch_size, scale_factor)
    if longest_edge < 1:
        raise InvalidArgumentError(
            expected("size.longest_edge", "a positive integer", longest_edge)
        )
    single = TileGeometry(
        "smolvlm", size, tile_size, patch_size, scale_factor, (0, 0), (tile_size,) * 2
    )
    if not split:
        return single
    canvas = tile_canvas(longest_edge_size(size, longest_edge), tile_size)
    if max(canvas) <= tile_size:
        return single
    grid = (canvas[0] // tile_size, canvas[1] // tile_size)
    return TileGeometry("smolvlm", size, tile_size, patch_size, scale_factor, grid, canvas)
