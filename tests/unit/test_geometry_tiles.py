"""Tile geometry of InternVL3/3.5 and SmolVLM2 against transformers' own arithmetic.

The grid choice and resize arithmetic are compared with the stock image processors' functions
over many sizes (no pixels); the pixel crops themselves are checked in
tests/integration/test_tiles_reference.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from transformers import GotOcr2ImageProcessorPil, SmolVLMImageProcessorPil
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from edge_hired.errors import AttentionShapeError, InvalidArgumentError
from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry

SIZES = [
    (h, w)
    for h in (1, 3, 100, 224, 448, 449, 500, 896, 900, 1344, 2000, 5000)
    for w in (1, 7, 300, 448, 512, 895, 1000, 1344, 1792, 4000, 9000)
]


@pytest.mark.parametrize(("min_tiles", "max_tiles"), [(1, 12), (1, 6), (2, 12), (1, 2), (4, 9)])
def test_internvl_grid_is_the_processors_for_every_size(min_tiles: int, max_tiles: int) -> None:
    for size in SIZES:
        cols, rows = get_optimal_tiled_canvas(size, (448, 448), min_tiles, max_tiles)
        geometry = internvl_geometry(size, min_tiles=min_tiles, max_tiles=max_tiles)
        assert geometry.reported_grid == (rows, cols), size
        expected_canvas = (448 * rows, 448 * cols) if rows * cols > 1 else (448, 448)
        assert geometry.canvas == expected_canvas


def test_internvl_image_count_is_the_processors() -> None:
    processor = GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448}, crop_to_patches=True, max_patches=12
    )
    for size in SIZES:
        geometry = internvl_geometry(size)
        assert processor.get_number_of_image_patches(*size) == geometry.num_partitions, size


def test_internvl_tie_rule_prefers_more_tiles_until_the_image_is_too_small() -> None:
    # All of 1x1, 2x2, 3x3 match a square exactly; a larger grid wins while the image's area
    # exceeds half the grid's pixels: 448^2 < 2 x 448^2 (1x1); 900^2 > 2 x 448^2 but < 4.5 x.
    assert internvl_geometry((448, 448)).grid == (0, 0)
    assert internvl_geometry((900, 900)).grid == (2, 2)
    assert internvl_geometry((1344, 1344)).grid == (3, 3)
    assert internvl_geometry((1344, 1344)).num_tokens == 2560  # 9 tiles + thumbnail, 256 each


def test_internvl_single_view_without_tiling() -> None:
    for geometry in (
        internvl_geometry((1344, 1344), crop_to_patches=False),
        internvl_geometry((1344, 1344), max_tiles=1),
    ):
        assert (geometry.grid, geometry.num_partitions, geometry.num_tokens) == ((0, 0), 1, 256)


@pytest.mark.parametrize(
    ("tile", "patch", "scale", "longest"),
    [(512, 16, 4, 2048), (384, 14, 3, 1536), (512, 16, 4, 1024)],
)
def test_smolvlm_grid_is_the_processors_count(
    tile: int, patch: int, scale: int, longest: int
) -> None:
    processor = SmolVLMImageProcessorPil(
        size={"longest_edge": longest}, max_image_size={"longest_edge": tile}
    )
    mismatches = []
    for size in SIZES:
        geometry = smolvlm_geometry(size, tile, patch, scale, longest)
        count, rows, cols = processor.get_number_of_image_patches(*size)
        mine = (geometry.num_partitions if geometry.num_sub_images else 0, *geometry.grid)
        if mine != (count, rows, cols):
            mismatches.append((size, mine, (count, rows, cols)))
    assert mismatches == []


def test_smolvlm_grids_run_from_1x4_to_4x4_plus_the_global_image() -> None:
    assert smolvlm_geometry((200, 1024)).grid == (1, 4)
    assert smolvlm_geometry((1000, 2048)).grid == (2, 4)
    assert smolvlm_geometry((2000, 700)).grid == (4, 2)
    square = smolvlm_geometry((800, 800))
    assert (square.grid, square.num_partitions, square.num_tokens) == ((4, 4), 17, 17 * 64)
    big = smolvlm_geometry((800, 800), 384, 14, 3, 1536)  # SmolVLM2-2.2B: 384 px, 81 tokens
    assert (big.grid, big.tokens_per_partition, big.num_tokens) == ((4, 4), 81, 17 * 81)


def test_smolvlm_single_view_when_the_canvas_is_one_tile() -> None:
    assert smolvlm_geometry((800, 800), longest_edge=512).grid == (0, 0)
    assert smolvlm_geometry((800, 800), split=False).num_partitions == 1
    assert smolvlm_geometry((800, 800), longest_edge=513).grid == (2, 2)


# ------------------------------------------------------------------ tokens, blocks, regions


def test_token_blocks_are_raster_blocks_of_the_patch_grid() -> None:
    geometry = internvl_geometry((900, 900))
    blocks = geometry.token_patches()
    assert blocks.shape == (256, 4)
    assert blocks[0].tolist() == [0, 1, 32, 33]
    assert blocks[17].tolist() == [66, 67, 98, 99]  # token (1, 1)
    assert sorted(blocks.reshape(-1).tolist()) == list(range(1024))
    smol = smolvlm_geometry((800, 800)).token_patches()
    assert smol.shape == (64, 16)
    assert smol[9].tolist() == [r * 32 + c for r in range(4, 8) for c in range(4, 8)]


def test_block_scores_sum_each_tokens_patches_and_keep_leading_axes() -> None:
    geometry = smolvlm_geometry((900, 2048), 384, 14, 3, 1536)
    patches = np.random.default_rng(0).random((geometry.num_partitions, 2, 729))
    tokens = geometry.block_scores(patches)
    assert tokens.shape == (geometry.num_partitions, 2, 81) and tokens.dtype == np.float32
    gathered = patches[..., geometry.token_patches()].sum(axis=-1)
    np.testing.assert_allclose(tokens, gathered, rtol=1e-6)
    with pytest.raises(AttentionShapeError, match="patch scores"):
        geometry.block_scores(np.zeros((2, 728)))


def test_global_tokens_map_to_the_tile_under_their_centre() -> None:
    owners = internvl_geometry((1344, 1344)).full_to_sub_image().reshape(16, 16)
    # 3 x 3 tiles on 16 x 16 tokens: centres (r + 0.5) / 16 cross 1/3 between rows 4 and 5
    # and 2/3 between rows 10 and 11.
    assert owners[:, 0].tolist() == [1] * 5 + [4] * 6 + [7] * 5
    assert owners[0].tolist() == [1] * 5 + [2] * 6 + [3] * 5
    wide = smolvlm_geometry((200, 1024)).full_to_sub_image().reshape(8, 8)
    assert (wide == (1 + np.arange(8) // 2)[None, :]).all()
    with pytest.raises(InvalidArgumentError, match="no tiles"):
        internvl_geometry((448, 448)).full_to_sub_image()


def test_stock_order_puts_tiles_row_major_then_the_global_view() -> None:
    geometry = internvl_geometry((448, 896))  # 1 x 2 tiles + thumbnail
    order = geometry.stock_order()
    assert geometry.stock_partitions().tolist() == [1, 2, 0]
    assert order[:256, 0].tolist() == [1] * 256 and order[512:, 0].tolist() == [0] * 256
    assert order[256:260].tolist() == [[2, 0], [2, 1], [2, 2], [2, 3]]
    index = geometry.stock_index()
    assert (index[0] == np.arange(512, 768)).all() and (index[2] == np.arange(256, 512)).all()
    assert internvl_geometry((448, 448)).stock_partitions().tolist() == [0]


def test_regions_cover_the_image_in_tiles() -> None:
    geometry = smolvlm_geometry((1000, 2048))  # canvas 1024 x 2048, 2 x 4 tiles
    assert geometry.canvas == (1024, 2048)
    boxes = geometry.canvas_boxes()
    assert boxes[0].tolist() == [0, 0, 1024, 2048]
    assert boxes[1].tolist() == [0, 0, 512, 512] and boxes[8].tolist() == [512, 1536, 1024, 2048]
    regions = geometry.image_regions()
    np.testing.assert_allclose(regions[8], [1000 * 0.5, 2048 * 0.75, 1000, 2048])
    on_global = geometry.global_view_boxes()
    np.testing.assert_allclose(on_global[0], [0, 0, 512, 512])
    np.testing.assert_allclose(on_global[6], [256, 128, 512, 256])  # tile (1, 1) of 2 x 4
    assert (geometry.token_grid, geometry.patch_grid) == ((8, 8), (32, 32))


def test_each_global_token_lies_in_the_global_view_box_of_its_tile() -> None:
    for geometry in (internvl_geometry((1344, 1792)), smolvlm_geometry((2000, 700))):
        boxes, n = geometry.global_view_boxes(), geometry.n_side
        owners = geometry.full_to_sub_image().reshape(n, n)
        centre = (np.arange(n) + 0.5) * geometry.tile_size / n
        for r, c in itertools.product(range(n), range(n)):
            top, left, bottom, right = boxes[owners[r, c]]
            assert top <= centre[r] < bottom and left <= centre[c] < right


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: internvl_geometry((448, 448), downsample_ratio=0.3), "downsample_ratio"),
        (lambda: internvl_geometry((448, 448), patch_size=500), "tile / patch"),
        (lambda: internvl_geometry((448, 448), min_tiles=3, max_tiles=2), "min / max"),
        (lambda: internvl_geometry((0, 448)), "image size"),
        (lambda: smolvlm_geometry((10, 10), scale_factor=5), "merge"),
        (lambda: smolvlm_geometry((10, 10), longest_edge=0), "longest_edge"),
    ],
)
def test_bad_settings_raise_one_line_errors(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=match):
        call()


def test_every_partition_is_valid_and_there_is_no_shrink() -> None:
    for geometry in itertools.chain(
        (internvl_geometry(s) for s in SIZES[::7]), (smolvlm_geometry(s) for s in SIZES[::7])
    ):
        assert (
            geometry.valid_counts().tolist()
            == [geometry.tokens_per_partition] * geometry.num_partitions
        )
        assert geometry.resized is None
