"""LLaVA-OneVision geometry checked against transformers itself: packing, resize, token counts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LlavaOnevisionConfig
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel
from transformers.models.llava_onevision.processing_llava_onevision import (
    LlavaOnevisionProcessor,
)

from edge_hired.hired.budget import ratio_tokens
from edge_hired.hired.geometry import NEWLINE, onevision_geometry
from edge_hired.hired.resize import blend, linear_taps

CONFIG = LlavaOnevisionConfig()  # llava-onevision-qwen2-*: SigLIP 384/14, 36 pinpoints, max 9
PINS = [tuple(p) for p in CONFIG.image_grid_pinpoints]

# (height, width): below and above the anyres_max_9 threshold, wide, tall, tiny, huge, odd.
SIZES = [
    (384, 384),
    (1, 1),
    (7, 9),
    (480, 640),
    (640, 480),
    (768, 768),
    (1000, 1000),
    (1080, 1920),
    (1920, 1080),
    (2304, 2304),
    (4000, 4000),
    (3, 4000),
    (4000, 3),
    (300, 1000),
    (1000, 300),
    (1152, 1153),
    (999, 1501),
    (2048, 700),
    (123, 457),
    (1536, 2304),
]


def stock_packed(features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """transformers' pack_image_features on [P, N, C] features, newline = -1 in every channel."""
    packed, _ = LlavaOnevisionModel.pack_image_features(
        SimpleNamespace(config=CONFIG),
        [features],
        torch.tensor([list(size)]),
        image_newline=torch.full((features.shape[-1],), float(NEWLINE)),
        vision_aspect_ratio="anyres_max_9",
    )
    return packed[0].numpy()


def ours_packed(features: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Our packing order at 100%, with resized positions rebuilt from their four taps."""
    geometry = onevision_geometry(size, PINS)
    order = geometry.packing_order([np.flatnonzero(r) for r in geometry.valid_mask()], "stock")
    out = np.full((len(order), features.shape[-1]), float(NEWLINE), dtype=np.float32)
    rows = np.flatnonzero(order[:, 0] >= 0)
    out[rows] = features[order[rows, 0], order[rows, 1]]
    if geometry.resized is not None:
        position = geometry.position_index()
        sub = rows[order[rows, 0] >= 1]
        src, wy, wx = geometry.sub_taps(position[order[sub, 0], order[sub, 1]])
        corners = tuple(features[src[:, c, 0], src[:, c, 1]] for c in range(4))
        out[sub] = blend(corners, (wy[:, :1], wy[:, 1:]), (wx[:, :1], wx[:, 1:]))
    return out


@pytest.mark.parametrize("size", SIZES)
def test_packing_matches_transformers_bit_for_bit(size: tuple[int, int]) -> None:
    geometry = onevision_geometry(size, PINS)
    generator = torch.Generator().manual_seed(sum(size))
    features = torch.randn(geometry.num_partitions, 729, 3, generator=generator)
    np.testing.assert_array_equal(ours_packed(features.numpy(), size), stock_packed(features, size))


@pytest.mark.parametrize("size", SIZES)
def test_token_count_matches_the_processor(size: tuple[int, int]) -> None:
    processor = SimpleNamespace(
        image_processor=SimpleNamespace(image_grid_pinpoints=CONFIG.image_grid_pinpoints),
        num_image_tokens=729,
        vision_aspect_ratio="anyres_max_9",
    )
    processor._get_unpadded_features = LlavaOnevisionProcessor._get_unpadded_features.__get__(
        processor
    )
    stock = LlavaOnevisionProcessor._get_number_of_features(processor, *size, 384, 384)
    geometry = onevision_geometry(size, PINS)
    assert geometry.valid_counts().sum() + geometry.visible_grid()[0] == stock


def test_hand_computed_downsampling_of_a_square_image() -> None:
    # 2304x2304 -> pinpoint 2304x2304, 6x6 tiles of 27 -> 162x162 tokens, nothing unpadded;
    # ratio = sqrt(162^2 / (9 * 27^2)) = 2 > 1.1 -> 81x81 positions, anchors every 2nd token.
    geometry = onevision_geometry((2304, 2304), PINS)
    assert geometry.grid == (6, 6) and geometry.resized == (81, 81)
    order = geometry.stitched_order()
    # centres at stitched row 1, cols 1, 3, 5 -> token 27 * 1 + col of tile 1
    assert order[:3].tolist() == [[1, 28], [1, 30], [1, 32]]
    assert order[12].tolist() == [1, 52] and order[13].tolist() == [2, 27]  # col 27 -> tile 2
    assert geometry.valid_counts().sum() == 729 + 81 * 81


def test_a_ratio_is_a_share_of_what_the_stock_model_feeds_once_the_grid_shrinks() -> None:
    shrunk = onevision_geometry((2304, 2304), PINS)  # 37 partitions seen, 729 + 81 * 81 fed
    assert ratio_tokens(shrunk, 0.2) == math.floor(0.2 * (729 + 81 * 81)) == 1458
    whole = onevision_geometry((384, 384), PINS)  # not shrunk: the paper's (1 + m) x N
    assert ratio_tokens(whole, 0.2) == math.floor(0.2 * 2 * 729) == 291


def test_small_images_are_not_resized() -> None:
    # 384x384 -> pinpoint 384x384: one tile, ratio = sqrt(729 / 6561) < 1.1.
    geometry = onevision_geometry((384, 384), PINS)
    assert geometry.grid == (1, 1) and geometry.resized is None
    assert geometry.valid_counts().tolist() == [729, 729]


def test_resized_scores_follow_the_features() -> None:
    geometry = onevision_geometry((1080, 1920), PINS)
    assert geometry.resized is not None
    rng = np.random.default_rng(0)
    scores = rng.random((geometry.num_partitions, 729)).astype(np.float32)
    resized = geometry.feature_scores(scores)
    packed = ours_packed(scores[..., None], (1080, 1920))[:, 0]
    order = geometry.packing_order([np.flatnonzero(r) for r in geometry.valid_mask()], "stock")
    rows = order[:, 0] >= 0
    np.testing.assert_array_equal(resized[order[rows, 0], order[rows, 1]], packed[rows])


@pytest.mark.parametrize("sizes", [(162, 81), (137, 83), (200, 152), (5, 4)])
def test_taps_are_torchs(sizes: tuple[int, int]) -> None:
    """One-hot columns through torch's interpolate give exactly our taps' weights."""
    in_size, out_size = sizes
    eye = torch.eye(in_size)[:, None, None, :]
    weights = torch.nn.functional.interpolate(eye, [1, out_size], mode="bilinear")[:, 0, 0]
    taps = linear_taps(in_size, out_size)
    ours = np.zeros((in_size, out_size), dtype=np.float32)
    np.add.at(ours, (taps.low, np.arange(out_size)), taps.w_low)
    np.add.at(ours, (taps.high, np.arange(out_size)), taps.w_high)
    np.testing.assert_array_equal(ours, weights.numpy())
    assert math.isclose(float(ours.sum()), out_size, rel_tol=1e-6)
