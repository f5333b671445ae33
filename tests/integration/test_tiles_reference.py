"""Tile geometry against the stock PIL image processors' pixels and the models' pixel shuffle.

The processors are built with the checkpoints' documented settings (no hub): InternVL3/3.5's
`GotOcr2ImageProcessorPil` with 448 px tiles and `crop_to_patches=True, max_patches=12` (what
`InternVLProcessor` asks for), SmolVLM2's `SmolVLMImageProcessorPil` with 512 px tiles and
`size.longest_edge` 2048 (256M / 500M) or 384 px and 1536 (2.2B). For each shape the stock
pixel_values must be, image by image, the crops of the canvas our geometry names (rebuilt with
the processor's own resize and normalisation at our sizes), tiles row-major, global view last.
Random-noise images make any off-by-one in a size or a box show up as a pixel mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import GotOcr2ImageProcessorPil, SmolVLMImageProcessorPil
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.models.internvl.modeling_internvl import InternVLModel
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector

from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import longest_edge_size, smolvlm_geometry
from edge_hired.hired.tiles import TileGeometry

# (height, width) -> (rows, cols): one tile, smallest multi-tile grid, wide, tall, a tie won by
# the larger grid, and the largest grid (12 tiles).
INTERNVL_SHAPES = {
    (448, 448): (1, 1),
    (448, 896): (1, 2),
    (448, 2000): (1, 4),
    (1800, 500): (4, 1),
    (900, 900): (2, 2),
    (1344, 1792): (3, 4),
}
# (height, width, tile, longest_edge) -> (rows, cols): smallest (1 x 4), wide, tall, largest
# (4 x 4), SmolVLM2-2.2B's 384 px tiles, and a single view (longest_edge at one tile).
SMOLVLM_SHAPES = {
    (200, 1024, 512, 2048): (1, 4),
    (1000, 2048, 512, 2048): (2, 4),
    (2000, 700, 512, 2048): (4, 2),
    (800, 800, 512, 2048): (4, 4),
    (600, 900, 384, 1536): (3, 4),
    (300, 400, 512, 512): (1, 1),
}


def noise(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def assert_crops(
    geometry: TileGeometry, stock: list[np.ndarray], canvas: np.ndarray, whole: np.ndarray
) -> None:
    """Stock images == our boxes on the canvas (tiles) and the global view, in stock order."""
    assert len(stock) == geometry.num_partitions
    boxes = geometry.canvas_boxes()
    for index, part in enumerate(geometry.stock_partitions()):
        top, left, bottom, right = boxes[part]
        expected = whole if part == 0 else canvas[:, top:bottom, left:right]
        np.testing.assert_array_equal(stock[index], expected, err_msg=f"image {index}")


# ---------------------------------------------------------------- InternVL3 / 3.5


def internvl_processor() -> GotOcr2ImageProcessorPil:
    return GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1, max_patches=12
    )


@pytest.mark.parametrize("size", sorted(INTERNVL_SHAPES))
def test_internvl_tiles_are_the_processors_crops(size: tuple[int, int]) -> None:
    processor, image = internvl_processor(), noise(*size)
    geometry = internvl_geometry(size)
    assert geometry.reported_grid == INTERNVL_SHAPES[size]
    out = processor(image)
    assert out["num_patches"] == [geometry.num_partitions]
    height, width = geometry.canvas
    canvas = processor(image, crop_to_patches=False, size={"height": height, "width": width})
    whole = processor(image, crop_to_patches=False)["pixel_values"][0]
    assert_crops(geometry, list(out["pixel_values"]), canvas["pixel_values"][0], whole)


def test_internvl_pixel_shuffle_groups_the_geometrys_patch_blocks() -> None:
    geometry = internvl_geometry((900, 900))
    patches = torch.arange(geometry.patches_per_partition, dtype=torch.float32)
    grid = patches.reshape(1, geometry.patch_side, geometry.patch_side, 1)
    shuffled = InternVLModel.pixel_shuffle(None, grid, scale_factor=0.5)  # type: ignore[arg-type]
    tokens = shuffled.reshape(geometry.tokens_per_partition, -1).long().numpy()
    assert (tokens == geometry.token_patches()).all()


# ---------------------------------------------------------------- SmolVLM2


def smolvlm_processor(tile: int, longest: int) -> SmolVLMImageProcessorPil:
    return SmolVLMImageProcessorPil(
        size={"longest_edge": longest}, max_image_size={"longest_edge": tile}
    )


def smolvlm_reference(
    processor: SmolVLMImageProcessorPil, image: Image.Image, geometry: TileGeometry, longest: int
) -> tuple[np.ndarray, np.ndarray]:
    """The canvas and the global view, resized with the processor's own resize at our sizes."""
    lanczos = PILImageResampling.LANCZOS
    first = longest_edge_size(geometry.image_size, longest)
    pixels = np.moveaxis(np.array(image), -1, 0)
    step = processor.resize(pixels, SizeDict(height=first[0], width=first[1]), resample=lanczos)
    if geometry.num_sub_images:
        canvas = processor.resize(
            step, SizeDict(height=geometry.canvas[0], width=geometry.canvas[1]), resample=lanczos
        )
        whole = processor.resize(
            canvas, SizeDict(height=geometry.tile_size, width=geometry.tile_size), resample=lanczos
        )
    else:
        canvas = whole = processor.resize(
            step, SizeDict(height=geometry.tile_size, width=geometry.tile_size), resample=lanczos
        )
    return tuple(_normalise(processor, x) for x in (canvas, whole))  # type: ignore[return-value]


def _normalise(processor: SmolVLMImageProcessorPil, pixels: np.ndarray) -> np.ndarray:
    scaled = processor.rescale(pixels, processor.rescale_factor)
    return processor.normalize(scaled, processor.image_mean, processor.image_std)


@pytest.mark.parametrize("case", sorted(SMOLVLM_SHAPES))
def test_smolvlm_tiles_are_the_processors_crops(case: tuple[int, int, int, int]) -> None:
    height, width, tile, longest = case
    processor, image = smolvlm_processor(tile, longest), noise(height, width)
    scale, patch = (4, 16) if tile == 512 else (3, 14)
    geometry = smolvlm_geometry((height, width), tile, patch, scale, longest)
    assert geometry.reported_grid == SMOLVLM_SHAPES[case]
    out = processor(image, return_row_col_info=True)
    assert (out["rows"], out["cols"]) == ([[geometry.grid[0]]], [[geometry.grid[1]]])
    canvas, whole = smolvlm_reference(processor, image, geometry, longest)
    assert_crops(geometry, list(out["pixel_values"][0]), canvas, whole)


def test_smolvlm_pixel_shuffle_groups_the_geometrys_patch_blocks() -> None:
    for geometry in (smolvlm_geometry((800, 800)), smolvlm_geometry((800, 800), 384, 14, 3, 1536)):
        patches = torch.arange(geometry.patches_per_partition, dtype=torch.float32)
        shuffled = SmolVLMConnector.pixel_shuffle(None, patches.reshape(1, -1, 1), geometry.merge)  # type: ignore[arg-type]
        tokens = shuffled.reshape(geometry.tokens_per_partition, -1).long().numpy()
        assert (tokens == geometry.token_patches()).all()
