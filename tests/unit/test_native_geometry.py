"""Native-resolution geometry (Qwen3-VL / Qwen3.5 / Qwen2.5-VL) against transformers' own code.

The smart resize and grid are compared with the stock PIL image processor over many sizes; the
patch order with its pixels (an image already at its canvas size, no resize, no rescale, so the
comparison is exact); Qwen2.5-VL's window order with `get_vision_window_index`; and HiRED on the
single partition keeps the global top-k merge units by their summed patch scores.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from transformers import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as stock_resize
from transformers.vision_utils import get_vision_window_index

from edge_hired.errors import AttentionShapeError, InvalidArgumentError
from edge_hired.hired import select_tokens
from edge_hired.hired.native_geometry import (
    native_geometry,
    smart_resize,
    unpermute_windows,
    window_index,
    window_patch_index,
)

SIDES = (1, 13, 28, 31, 32, 56, 100, 224, 333, 448, 500, 896, 1000, 1344, 2000, 3001, 5000)
# (patch, min_pixels, max_pixels): Qwen3-VL / 3.5 hub settings, Qwen2.5-VL's, and a tight cap.
SETTINGS = [(16, 65536, 16777216), (14, 3136, 12845056), (16, 1024, 200704), (14, 3136, 313600)]


@pytest.mark.parametrize(("patch", "low", "high"), SETTINGS)
def test_smart_resize_is_the_processors_for_every_size(patch: int, low: int, high: int) -> None:
    for height, width in itertools.product(SIDES, SIDES):
        if max(height, width) > 200 * min(height, width):
            with pytest.raises(InvalidArgumentError):
                smart_resize(height, width, 2 * patch, low, high)
            continue
        want = stock_resize(height, width, factor=2 * patch, min_pixels=low, max_pixels=high)
        assert smart_resize(height, width, 2 * patch, low, high) == want, (height, width)


def test_rounding_halves_go_to_even_as_python_round() -> None:
    # 42 / 28 = 1.5 -> 2 (even), 70 / 28 = 2.5 -> 2 (even), 98 / 28 = 3.5 -> 4
    assert [smart_resize(h, 280, 28, 1, 10**9)[0] for h in (42, 70, 98)] == [56, 56, 112]


def processor(patch: int, low: int, high: int, **kwargs: object) -> Qwen2VLImageProcessorPil:
    size = {"shortest_edge": low, "longest_edge": high}
    return Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, size=size, **kwargs)


@pytest.mark.parametrize(("patch", "low", "high"), SETTINGS[:2])
@pytest.mark.parametrize("size", [(480, 640), (300, 1200), (1200, 300), (64, 64), (1344, 1344)])
def test_grid_thw_is_the_processors(patch: int, low: int, high: int, size: tuple[int, int]) -> None:
    image = np.zeros((*size, 3), dtype=np.uint8)
    stock = processor(patch, low, high)(image, return_tensors="np")
    geometry = native_geometry(size, patch, 2, low, high)
    assert stock["image_grid_thw"].tolist() == [list(geometry.grid_thw)]
    assert stock["pixel_values"].shape[0] == geometry.num_patches


def test_a_1344_px_square_is_1764_tokens_on_qwen3_vl() -> None:
    geometry = native_geometry((1344, 1344))
    assert (geometry.tokens_per_partition, geometry.num_patches) == (1764, 7056)
    assert (geometry.reported_grid, geometry.num_partitions) == ((1, 1), 1)


@pytest.mark.parametrize("patch", [14, 16])
def test_stock_patches_are_merge_blocks_of_the_raster_grid(patch: int) -> None:
    geometry = native_geometry((6 * patch, 8 * patch), patch, 2, 1, 10**8)
    assert geometry.canvas == (6 * patch, 8 * patch)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*geometry.canvas, 3), dtype=np.uint8)
    raw = processor(patch, 1, 10**8, do_resize=False, do_rescale=False, do_normalize=False)
    pixels = raw(image, return_tensors="np")["pixel_values"]
    rows, cols = geometry.patch_grid
    chw = image.transpose(2, 0, 1).astype(np.float32)
    grid = chw.reshape(3, rows, patch, cols, patch).transpose(1, 3, 0, 2, 4)
    raster = grid.reshape(rows * cols, 3, 1, patch, patch)
    want = np.broadcast_to(raster, (rows * cols, 3, 2, patch, patch)).reshape(rows * cols, -1)
    np.testing.assert_array_equal(pixels, want[geometry.patch_raster()])


def test_block_scores_sum_each_units_four_patches() -> None:
    geometry = native_geometry((64, 96), 16, 2, 1, 10**8)  # 4 x 6 patches, 2 x 3 units
    scores = np.arange(24, dtype=np.float32).reshape(1, 1, 24)
    assert geometry.block_scores(scores).tolist() == [[[6.0, 22.0, 38.0, 54.0, 70.0, 86.0]]]
    # unit 4 (row 1, col 1) covers raster patches (2, 2), (2, 3), (3, 2), (3, 3)
    assert sorted(geometry.patch_raster()[geometry.token_patches()[4]]) == [14, 15, 20, 21]
    with pytest.raises(AttentionShapeError):
        geometry.block_scores(np.zeros((1, 1, 23)))


@pytest.mark.parametrize(("rows", "cols"), [(4, 4), (8, 8), (6, 10), (10, 6), (2, 18), (9, 13)])
def test_window_index_is_the_stock_vision_window_index(rows: int, cols: int) -> None:
    geometry = native_geometry((28 * rows, 28 * cols), 14, 2, 1, 10**8)
    assert geometry.token_grid == (rows, cols)
    stock, _ = get_vision_window_index(
        torch.tensor([list(geometry.grid_thw)]),
        spatial_merge_size=2,
        window_size=112,
        patch_size=14,
    )
    assert window_index(geometry).tolist() == stock.tolist()


def test_unpermute_windows_inverts_the_encoders_permutation() -> None:
    geometry = native_geometry((28 * 6, 28 * 10), 14, 2, 1, 10**8)
    stock_order = np.arange(geometry.num_patches, dtype=np.float32) * 3.0
    # the encoder gathers units in window order: hidden[i] = stock[window_patch_index[i]]
    windowed = stock_order[window_patch_index(geometry)]
    assert not np.array_equal(windowed, stock_order)
    np.testing.assert_array_equal(unpermute_windows(geometry, windowed[None]), stock_order[None])


def test_hired_on_one_partition_keeps_the_global_top_k_units() -> None:
    geometry = native_geometry((64 * 5, 64 * 4), 16, 2, 1, 10**8)  # 20 x 16 patches, 80 units
    n = geometry.tokens_per_partition
    unit_scores = np.random.default_rng(1).permutation(n).astype(np.float32)
    patches = np.repeat(unit_scores, 4)[None, None, :] / 4  # each unit's 4 patches share its score
    final = geometry.block_scores(patches)
    selection = select_tokens(geometry, "hired", final, final, ratio=0.2)  # type: ignore[arg-type]
    top = np.sort(np.argsort(-unit_scores, kind="stable")[: n // 5])
    assert selection.num_kept == n // 5 == selection.budget
    assert selection.kept[0].tolist() == top.tolist()
    assert selection.order[:, 1].tolist() == top.tolist()
    assert selection.partition_budgets.tolist() == [n // 5]


@pytest.mark.parametrize("strategy", ["hired", "spatial", "random", "dart", "full"])
def test_budgeted_strategies_keep_exactly_the_budget_on_one_partition(strategy: str) -> None:
    geometry = native_geometry((224, 448))  # 7 x 14 = 98 merge units
    rng = np.random.default_rng(0)
    rows = rng.random((1, 2, geometry.tokens_per_partition))
    features = rng.normal(size=(1, geometry.tokens_per_partition, 8))
    selection = select_tokens(geometry, strategy, rows, rows, ratio=0.2, features=features)  # type: ignore[arg-type]
    want = 98 if strategy == "full" else 19  # floor(0.2 x 98)
    assert selection.num_kept == want == len(np.unique(selection.kept[0]))
    assert selection.order[:, 1].tolist() == sorted(selection.kept[0].tolist())
