"""HiRED's budget and selection on tiled images, and the prompt expansion that goes with it.

The worked example: an InternVL image of 2 x 2 tiles (5 partitions x 256 tokens), budget 20%
(floor(0.2 x 1280) = 256), alpha 0.5. The global view gets 128; the tiles share 128 by how many
of the global view's top floor(0.5 x 256) = 128 layer-0 tokens lie on them. The layer-0 signal
is built so that exactly 64 of those fall on tile 1, 32 on tile 2, 32 on tile 3 and none on
tile 4, so the tile budgets are 64, 32, 32, 0.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from transformers.models.internvl.processing_internvl import InternVLProcessor
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

from edge_hired.errors import InvalidArgumentError, UnknownStrategyError
from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.hired.tile_prompts import image_prompt, smolvlm_image_prompt
from edge_hired.hired.tile_select import (
    kept_counts,
    select_tile_tokens,
    stock_positions,
    to_partition_order,
)
from edge_hired.hired.tiles import TileGeometry

HEADS = 2


def spread_over_patches(geometry: TileGeometry, token_values: np.ndarray) -> np.ndarray:
    """Per-patch rows [P, HEADS, patches] whose block sums are token_values [P, N] exactly.

    Each token's value goes to the first patch of its block (the others get 0), split over the
    heads as value and 0, so every sum is exact in float32 for small integers.
    """
    patches = np.zeros((geometry.num_partitions, HEADS, geometry.patches_per_partition))
    first = geometry.token_patches()[:, 0]
    patches[:, 0, first] = token_values
    return patches


def layer0_tokens(geometry: TileGeometry) -> np.ndarray:
    """Global-view tokens: 2 on the 128 chosen ones (64 / 32 / 32 / 0 per tile), 1 elsewhere."""
    values = np.ones((geometry.num_partitions, 16, 16))
    values[0, :8, :8] = 2  # tile 1 (top-left): 64 tokens
    values[0, :4, 8:] = 2  # tile 2 (top-right): 32
    values[0, 8:12, :8] = 2  # tile 3 (bottom-left): 32
    return values.reshape(geometry.num_partitions, 256)


def feature_tokens(geometry: TileGeometry, seed: int = 1) -> np.ndarray:
    """Distinct integer scores per partition (a random permutation), well separated."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(256) + 1.0 for _ in range(geometry.num_partitions)])


def test_hired_worked_example_budgets_and_top_tokens() -> None:
    geometry = internvl_geometry((900, 900))
    assert geometry.grid == (2, 2)
    final = feature_tokens(geometry)
    selection = select_tile_tokens(
        geometry,
        "hired",
        spread_over_patches(geometry, layer0_tokens(geometry)),
        spread_over_patches(geometry, final),
        ratio=0.2,
    )
    assert selection.budget == 256 and selection.num_kept == 256
    assert selection.content_scores.tolist() == [0, 64, 32, 32, 0]
    assert selection.partition_budgets.tolist() == [128, 64, 32, 32, 0]
    for p, budget in enumerate([128, 64, 32, 32, 0]):
        top = np.sort(np.argsort(-final[p])[:budget])
        assert selection.kept[p].tolist() == top.tolist()
    assert kept_counts(selection) == [128, 64, 32, 32, 0]


def test_kept_tokens_are_packed_in_the_stock_order() -> None:
    geometry = internvl_geometry((900, 900))
    selection = select_tile_tokens(
        geometry,
        "hired",
        spread_over_patches(geometry, layer0_tokens(geometry)),
        spread_over_patches(geometry, feature_tokens(geometry)),
        tokens=256,
    )
    parts = selection.order[:, 0]
    assert parts.tolist() == [1] * 64 + [2] * 32 + [3] * 32 + [0] * 128
    positions = stock_positions(geometry, selection)
    assert (np.diff(positions) > 0).all()  # a subsequence of the stock feature sequence
    assert positions[-128:].min() >= 4 * 256  # the thumbnail's features come last


def test_full_budget_is_the_stock_sequence() -> None:
    geometry = smolvlm_geometry((1000, 2048))
    full = select_tile_tokens(geometry, "full", None, None)
    assert full.num_kept == geometry.num_tokens == 9 * 64
    assert (full.order == geometry.stock_order()).all()
    assert (stock_positions(geometry, full) == np.arange(geometry.num_tokens)).all()
    signal = spread_over_patches(geometry, feature_tokens(geometry)[:, :64])
    hired = select_tile_tokens(geometry, "hired", signal, signal, ratio=1.0)
    assert (hired.order == geometry.stock_order()).all()


def test_a_single_view_gets_the_whole_budget() -> None:
    geometry = internvl_geometry((448, 448))
    final = feature_tokens(geometry)
    signal = spread_over_patches(geometry, final)
    selection = select_tile_tokens(geometry, "hired", signal, signal, tokens=10)
    assert selection.partition_budgets.tolist() == [10]
    assert selection.kept[0].tolist() == np.sort(np.argsort(-final[0])[:10]).tolist()


def test_other_strategies_split_the_same_way_and_prumerge_is_refused() -> None:
    geometry = internvl_geometry((900, 900))
    init = spread_over_patches(geometry, layer0_tokens(geometry))
    for strategy in ("spatial", "random"):
        selection = select_tile_tokens(geometry, strategy, init, None, ratio=0.2)
        assert selection.partition_budgets.tolist() == [128, 64, 32, 32, 0]
    with pytest.raises(UnknownStrategyError, match="prumerge"):
        select_tile_tokens(geometry, "prumerge", init, init)


def test_stock_image_rows_reorder_to_partitions() -> None:
    geometry = internvl_geometry((448, 896))  # stock images: tile 1, tile 2, thumbnail
    assert to_partition_order(geometry, np.array([10, 20, 30])).tolist() == [30, 10, 20]
    with pytest.raises(InvalidArgumentError, match="per-image rows"):
        to_partition_order(geometry, np.zeros(2))


# ---------------------------------------------------------------- the prompt expansion


@pytest.mark.parametrize("size", [(448, 448), (448, 896), (1344, 1344), (1344, 1792)])
def test_internvl_expansion_is_the_stock_processors(size: tuple[int, int]) -> None:
    geometry = internvl_geometry(size)
    tokens = SimpleNamespace(
        start_image_token="<img>",
        image_token="<IMG_CONTEXT>",
        end_image_token="</img>",
        image_seq_length=256,
    )
    stock = InternVLProcessor.replace_image_token(
        tokens, {"num_patches": [geometry.num_partitions]}, 0
    )
    assert image_prompt(geometry) == stock
    assert image_prompt(geometry, [3] + [0] * (geometry.num_partitions - 1)) == (
        "<img>" + "<IMG_CONTEXT>" * 3 + "</img>"
    )


@pytest.mark.parametrize(
    "geometry",
    [
        smolvlm_geometry((200, 1024)),
        smolvlm_geometry((2000, 700)),
        smolvlm_geometry((800, 800)),
        smolvlm_geometry((800, 800), longest_edge=512),
    ],
)
def test_smolvlm_expansion_is_the_stock_processors(geometry: TileGeometry) -> None:
    stock = get_image_prompt_string(
        *geometry.grid,
        64,
        fake_token_around_image="<fake_token_around_image>",
        image_token="<image>",
        global_image_token="<global-img>",
    )
    assert image_prompt(geometry) == stock


def test_smolvlm_expansion_with_kept_counts_hand_worked() -> None:
    geometry = smolvlm_geometry((200, 1024))  # 1 x 4 tiles
    f, i = "<fake_token_around_image>", "<image>"
    text = smolvlm_image_prompt(geometry, [2, 1, 0, 0, 3])
    assert text == (
        f"{f}<row_1_col_1>{i}{f}<row_1_col_2>{f}<row_1_col_3>{f}<row_1_col_4>{i * 3}\n"
        f"\n{f}<global-img>{i * 2}{f}"
    )
    with pytest.raises(InvalidArgumentError, match="kept token counts"):
        smolvlm_image_prompt(geometry, [1, 2])
