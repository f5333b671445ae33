"""HiRED on a tiled image (InternVL, SmolVLM): patch signals -> token signals -> selection.

The encoder gives one attention signal per patch (InternViT's CLS rows, SigLIP's attention
received), while the LLM sees one token per patch block. A token's score is the sum over its
block (`TileGeometry.block_scores`); after that, HIRED.md's algorithm applies unchanged with the
global view as the "full image" partition: it gets `alpha x budget` (at most N), the tiles share
the rest in proportion to how many of the global view's top-k layer-0 tokens fall on their
region, and each partition keeps its top tokens by the feature-layer signal. `select_tokens`
does all of that on a `TileGeometry`, which answers the same questions as `ImageGeometry`;
`Selection.order` then lists kept (partition, token) pairs in the stock model's order (tiles
row-major, global view last).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_hired.errors import InvalidArgumentError, UnknownStrategyError, expected
from edge_hired.hired import Selection, select_tokens
from edge_hired.hired.tiles import TileGeometry

TILE_STRATEGIES = ("full", "hired", "hired-ref", "spatial", "random")


def select_tile_tokens(
    geometry: TileGeometry,
    strategy: str,
    init_patches: Any,
    final_patches: Any,
    *,
    ratio: float | None = None,
    tokens: int | None = None,
    cap: int | None = None,
    alpha: float = 0.5,
    seed: int = 0,
) -> Selection:
    """Select the LLM tokens of one tiled image from per-patch signals [P, heads, patches].

    Partition order is HiRED's (0 = global view, then tiles row-major); `to_partition_order`
    turns the stock pixel order (tiles, then global view) into it. Either signal may be None
    where the strategy does not read it. PruMerge needs per-token keys and is not offered here.
    """
    if strategy not in TILE_STRATEGIES:
        want = f"one of {', '.join(TILE_STRATEGIES)} for tiled models"
        raise UnknownStrategyError(expected("strategy", want, strategy))
    init = None if init_patches is None else geometry.block_scores(init_patches)
    final = None if final_patches is None else geometry.block_scores(final_patches)
    return select_tokens(  # type: ignore[arg-type]  # TileGeometry is ImageGeometry-shaped
        geometry,
        strategy,
        init,
        final,
        ratio=ratio,
        tokens=tokens,
        cap=cap,
        alpha=alpha,
        seed=seed,
    )


def to_partition_order(geometry: TileGeometry, stock_rows: Any) -> np.ndarray:
    """Reorder per-image arrays from the stock pixel order (tiles, global last) to partitions."""
    rows = np.asarray(stock_rows)
    if rows.ndim < 1 or rows.shape[0] != geometry.num_partitions:
        got = None if rows.ndim < 1 else rows.shape
        raise InvalidArgumentError(
            expected("per-image rows", f"{geometry.num_partitions} images", got)
        )
    out = np.empty_like(rows)
    out[geometry.stock_partitions()] = rows
    return out


def kept_counts(selection: Selection) -> list[int]:
    """Tokens kept per partition (for the prompt expansion)."""
    return [len(k) for k in selection.kept]


def stock_positions(geometry: TileGeometry, selection: Selection) -> np.ndarray:
    """Positions of the kept tokens in the stock feature sequence, in the order fed to the LLM.

    Gathering these rows from the stock model's projected features gives HiRED's sequence.
    """
    order = selection.order
    return geometry.stock_index()[order[:, 0], order[:, 1]]
