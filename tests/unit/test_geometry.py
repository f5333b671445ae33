"""Geometry checked against transformers itself: its packing order, token counts and pixels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlavaNextConfig
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel

from edge_hired.errors import InvalidArgumentError
from edge_hired.hired.geometry import (
    LLAVA_V16_PINPOINTS,
    NEWLINE,
    anyres_geometry,
    single_geometry,
)

# (height, width): square, wide, tall, tiny, huge, strips, and one per llava-v1.6 grid.
SIZES = [
    (672, 672),
    (336, 336),
    (1, 1),
    (3, 4000),
    (4000, 3),
    (560, 800),
    (800, 560),
    (480, 640),
    (640, 480),
    (300, 1000),
    (1000, 300),
    (1080, 1920),
    (1920, 1080),
    (4000, 4000),
    (337, 673),
    (999, 333),
    (123, 457),
    (2048, 700),
    (50, 60),
    (7, 9),
]


def stock_pack_order(height: int, width: int) -> np.ndarray:
    """Run transformers' pack_image_features on features labelled (partition, token)."""
    config = LlavaNextConfig(image_grid_pinpoints=[list(p) for p in LLAVA_V16_PINPOINTS])
    config.vision_config.image_size, config.vision_config.patch_size = 336, 14
    geometry = anyres_geometry((height, width))
    parts, n_tokens = geometry.num_partitions, geometry.tokens_per_partition
    labels = torch.stack(
        torch.meshgrid(torch.arange(parts), torch.arange(n_tokens), indexing="ij"), dim=-1
    ).double()
    packed, _ = LlavaNextModel.pack_image_features(
        SimpleNamespace(config=config),
        [labels],
        torch.tensor([[height, width]]),
        "default",
        image_newline=torch.tensor([float(NEWLINE), float(NEWLINE)]),
    )
    return packed[0].long().numpy()


@pytest.mark.parametrize("size", SIZES)
def test_stock_packing_order_matches_transformers(size: tuple[int, int]) -> None:
    geometry = anyres_geometry(size)
    all_valid = [np.flatnonzero(row) for row in geometry.valid_mask()]
    ours = geometry.packing_order(all_valid, "stock")
    np.testing.assert_array_equal(ours, stock_pack_order(*size))


@pytest.mark.parametrize("size", SIZES)
def test_token_count_matches_processor_arithmetic(size: tuple[int, int]) -> None:
    """valid tokens + newline rows == image tokens the stock processor inserts (CLS dropped)."""
    geometry = anyres_geometry(size)
    processor = SimpleNamespace(
        image_processor=SimpleNamespace(
            image_grid_pinpoints=[list(p) for p in LLAVA_V16_PINPOINTS]
        ),
        patch_size=14,
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
    )
    from transformers import LlavaNextProcessor

    processor._get_unpadded_features = LlavaNextProcessor._get_unpadded_features.__get__(processor)
    stock = LlavaNextProcessor._get_number_of_features(processor, size[0], size[1], 336, 336) - 1
    newlines = len(geometry.rows_kept)
    assert geometry.valid_counts().sum() + newlines == stock


@pytest.mark.parametrize(
    "size, grid",
    [
        ((672, 672), (2, 2)),
        ((336, 672), (1, 2)),
        ((672, 336), (2, 1)),
        ((336, 1008), (1, 3)),
        ((1008, 336), (3, 1)),
        ((336, 336), (1, 2)),
    ],
)
def test_every_pinpoint_grid(size: tuple[int, int], grid: tuple[int, int]) -> None:
    assert anyres_geometry(size).grid == grid


def test_hand_computed_unpadding_for_a_wide_image() -> None:
    # 480x640 -> best 672x672 (2x2, 48x48 tokens); width/height 4/3 > 1 so rows are cut:
    # new_h = round(480 * 48/640) = 36, pad = (48 - 36) // 2 = 6 -> rows 6..41 kept.
    geometry = anyres_geometry((480, 640))
    assert geometry.grid == (2, 2)
    assert (geometry.rows_kept, geometry.cols_kept) == (range(6, 42), range(0, 48))
    assert geometry.valid_counts().tolist() == [576, 18 * 24, 18 * 24, 18 * 24, 18 * 24]


def test_hand_computed_full_to_sub_mapping_square() -> None:
    # 672x672 on a 2x2 grid: no padding, the full image's left/top half maps to column/row 0.
    mapping = anyres_geometry((672, 672)).full_to_sub_image().reshape(24, 24)
    assert (mapping[:12, :12] == 1).all() and (mapping[:12, 12:] == 2).all()
    assert (mapping[12:, :12] == 3).all() and (mapping[12:, 12:] == 4).all()


def test_hand_computed_full_to_sub_mapping_with_padding() -> None:
    # 480x640 -> resized to 504x672 (ceil(480*672/640)=504), pasted at y = (672-504)//2 = 84.
    # Full-image patch row r has centre y = (r+0.5)/24*480 -> (r+0.5)/24*504 + 84 in the canvas;
    # it is in grid row 0 while that is < 336, i.e. (r+0.5)*21 < 252 -> r <= 11.
    mapping = anyres_geometry((480, 640)).full_to_sub_image().reshape(24, 24)
    assert (mapping[:12, :12] == 1).all() and (mapping[12:, 12:] == 4).all()
    # A 1x3 wide image: columns split in thirds (8 patches each).
    wide = anyres_geometry((336, 1008)).full_to_sub_image().reshape(24, 24)
    assert (wide[:, :8] == 1).all() and (wide[:, 8:16] == 2).all() and (wide[:, 16:] == 3).all()


@pytest.mark.parametrize("size", [(560, 800), (480, 640), (300, 1000), (1000, 300), (900, 500)])
def test_full_to_sub_mapping_follows_the_real_image_processor(size: tuple[int, int]) -> None:
    """Paint each sampled full-image patch centre, run the stock processor, find the paint."""
    height, width = size
    geometry = anyres_geometry(size)
    mapping = geometry.full_to_sub_image().reshape(24, 24)
    processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=[list(p) for p in LLAVA_V16_PINPOINTS],
        do_normalize=False,
        do_rescale=False,
        resample=Image.NEAREST,
    )
    for r, c in [(0, 0), (5, 19), (11, 11), (12, 12), (23, 23), (17, 3)]:
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        y, x = int((r + 0.5) / 24 * height), int((c + 0.5) / 24 * width)
        canvas[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = 255
        pixels = processor(Image.fromarray(canvas), return_tensors="np")["pixel_values"][0]
        lit = [p for p in range(1, geometry.num_partitions) if pixels[p].max() > 0]
        assert mapping[r, c] in lit


def test_single_partition_geometry() -> None:
    geometry = single_geometry((480, 640))
    assert geometry.num_partitions == 1 and geometry.reported_grid == (1, 1)
    order = geometry.packing_order([np.arange(576)], "stock")
    assert order.shape == (576, 2) and (order[:, 0] == 0).all()


@pytest.mark.parametrize("bad", [(0, 10), (10, -1), (5,)])
def test_bad_image_size_is_a_typed_error(bad: tuple[int, ...]) -> None:
    with pytest.raises(InvalidArgumentError, match="expected"):
        anyres_geometry(bad)  # type: ignore[arg-type]
