"""InternVL3 / InternVL3.5 tiling: the aspect-ratio grid, as `GotOcr2ImageProcessorPil` picks it.

With `crop_to_patches=True` (what `InternVLProcessor` asks for; the hub's preprocessor config
alone says false) the processor squashes the image onto a canvas of cols x rows tiles of 448 px
and crops it row-major, then appends a 448 px thumbnail of the whole image when there is more
than one tile. The grid is the one whose cols / rows is closest to width / height among all
grids of `min_patches..max_patches` tiles, visited in order of tile count (cols-major within a
count); on an exact tie a later (larger) grid wins while the image's area exceeds half the
grid's pixel area. Re-derived from transformers 5.23's `get_optimal_tiled_canvas`.
"""

from __future__ import annotations

import math

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.tiles import TileGeometry, check_image_size, check_tiling


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """(cols, rows) of every grid with min..max tiles, by tile count, cols-major within one."""
    grids = [
        (cols, rows)
        for cols in range(1, max_tiles + 1)
        for rows in range(1, max_tiles + 1)
        if min_tiles <= cols * rows <= max_tiles
    ]
    return sorted(grids, key=lambda grid: grid[0] * grid[1])


def best_grid(
    image_size: tuple[int, int], tile_size: int, min_tiles: int, max_tiles: int
) -> tuple[int, int]:
    """(rows, cols) of the grid closest to the image's aspect ratio (ties as described above)."""
    height, width = image_size
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), math.inf
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best[1], best[0]


def internvl_geometry(
    image_size: tuple[int, int],
    tile_size: int = 448,
    patch_size: int = 14,
    downsample_ratio: float = 0.5,
    min_tiles: int = 1,
    max_tiles: int = 12,
    crop_to_patches: bool = True,
) -> TileGeometry:
    """Geometry of an InternVL image of size (height, width).

    `min_tiles` / `max_tiles` are the processor's `min_patches` / `max_patches` (the family's
    token knob); one tile (or `crop_to_patches=False`, or max_tiles 1) gives a single view.
    """
    size = check_image_size(image_size)
    merge = _merge(downsample_ratio)
    check_tiling(tile_size, patch_size, merge)
    if not 1 <= min_tiles <= max_tiles:
        raise InvalidArgumentError(
            expected("min / max patches", "1 <= min <= max", (min_tiles, max_tiles))
        )
    grid = (1, 1)
    if crop_to_patches and max_tiles > 1:
        grid = best_grid(size, tile_size, min_tiles, max_tiles)
    if grid == (1, 1):
        return TileGeometry(
            "internvl", size, tile_size, patch_size, merge, (0, 0), (tile_size,) * 2
        )
    canvas = (grid[0] * tile_size, grid[1] * tile_size)
    return TileGeometry("internvl", size, tile_size, patch_size, merge, grid, canvas)


def _merge(downsample_ratio: float) -> int:
    """Patches per token side: 1 / downsample_ratio, which must be a whole number (0.5 -> 2)."""
    ratio = float(downsample_ratio)
    merge = round(1 / ratio) if ratio > 0 else 0
    if merge < 1 or abs(merge * ratio - 1) > 1e-9:
        raise InvalidArgumentError(expected("downsample_ratio", "1 / k for an integer k", ratio))
    return merge
