"""3-D M-RoPE positions for a Qwen-VL prompt whose image lost some of its tokens.

Qwen3-VL, Qwen3.5 and Qwen2.5-VL give each image token a (t, h, w) rotary position and each text
token three equal positions that continue after the image's largest one. Dropping visual tokens
must not move anything: every kept token keeps the position it has in the unpruned prompt, and
decoding continues from the unpruned maximum + 1, as in the stock model. So the stock
`get_rope_index` runs on the unpruned ids and the kept columns are taken from its output.

The result is what `generate` / `forward` accept as `position_ids`: [4, 1, L'] whose row 0 is the
plain sequence index (the text position the causal mask reads) and rows 1..3 the kept (t, h, w)
positions. `generate` extends every row by +1 per new token, which is exactly the stock
continuation; `rope_delta` is what a hand-written decode loop adds to the sequence index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edge_hired.errors import InvalidArgumentError, expected


@dataclass(frozen=True)
class PrunedPrompt:
    """Token ids and M-RoPE positions of a prompt after dropping visual tokens."""

    input_ids: torch.Tensor  # [1, L'] the prompt with only the kept image placeholders
    position_ids: torch.Tensor  # [4, 1, L'] (sequence index, t, h, w)
    rope_delta: int  # unpruned max position + 1 - L': next token sits at L' + rope_delta
    kept_columns: np.ndarray  # [L'] column of each kept token in the unpruned prompt


def image_token_types(input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """`mm_token_type_ids` for an image-only prompt: 1 at image placeholders, 0 elsewhere."""
    return (input_ids == image_token_id).to(torch.int32)


def stock_positions(model: Any, input_ids: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    """[3, 1, L] the stock model's 3-D positions of the unpruned prompt (one image)."""
    base = getattr(model, "model", model)
    types = image_token_types(input_ids, model.config.image_token_id)
    with torch.no_grad():
        positions, _ = base.get_rope_index(input_ids, types, image_grid_thw=grid_thw)
    return positions


def kept_columns(input_ids: torch.Tensor, image_token_id: int, kept: np.ndarray) -> np.ndarray:
    """Columns of the unpruned prompt that survive: all text, and the kept image tokens.

    `kept` holds raster indices over the merged grid, which is the order of the image's
    placeholders in the prompt (the stock feature order).
    """
    image_cols = np.flatnonzero(input_ids[0].cpu().numpy() == image_token_id)
    kept = np.asarray(kept, dtype=np.int64)
    if kept.size and (kept.min() < 0 or kept.max() >= len(image_cols)):
        want = f"raster indices in 0..{len(image_cols) - 1}"
        raise InvalidArgumentError(expected("kept tokens", want, (kept.min(), kept.max())))
    keep = np.ones(input_ids.shape[1], dtype=bool)
    keep[image_cols] = False
    keep[image_cols[np.unique(kept)]] = True
    return np.flatnonzero(keep)


def prune_prompt(
    model: Any, input_ids: torch.Tensor, grid_thw: torch.Tensor, kept: np.ndarray
) -> PrunedPrompt:
    """The prompt with only the kept image tokens, and their stock positions.

    `input_ids` is the unpruned [1, L] prompt with one image's N placeholders, `grid_thw` its
    [1, 3] patch grid, `kept` the kept merge units as raster indices over the merged grid.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise InvalidArgumentError(expected("input_ids", "[1, L]", tuple(input_ids.shape)))
    positions = stock_positions(model, input_ids, grid_thw)
    columns = kept_columns(input_ids, model.config.image_token_id, kept)
    index = torch.from_numpy(columns).to(input_ids.device)
    spatial = positions[:, :, index]
    sequence = torch.arange(len(columns), device=input_ids.device, dtype=spatial.dtype)
    position_ids = torch.cat([sequence.view(1, 1, -1), spatial], dim=0)
    delta = int(positions.max()) + 1 - len(columns)
    return PrunedPrompt(input_ids[:, index], position_ids, delta, columns)
