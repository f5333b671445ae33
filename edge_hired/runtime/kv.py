"""KV-cache tensors as plain per-layer (keys, values) tuples, and the batch's padded cache.

A cached prefix is stored as tensors no generation ever writes to: `DynamicCache` grows by
`torch.cat`, which allocates, and `fresh_cache` copies the prefix in anyway, so a later request
can never change what the next one reuses. Rows of a batch are left-padded to one length and
masked; rows join and leave between decode steps.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

LayerKV = tuple[torch.Tensor, torch.Tensor]  # [B, heads, T, head_dim] each


def layers_of(cache: DynamicCache) -> list[LayerKV]:
    """The cache's per-layer tensors (no copy)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def fresh_cache(layers: list[LayerKV]) -> DynamicCache:
    """A new DynamicCache holding copies of `layers` (an empty prefix gives an empty cache)."""
    if not layers or layers[0][0].shape[-2] == 0:
        return DynamicCache()
    return DynamicCache(ddp_cache_data=[(k.clone(), v.clone()) for k, v in layers])


def nbytes(layers: list[LayerKV]) -> int:
    """Bytes the tensors hold."""
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


def _pad_left(tensor: torch.Tensor, amount: int) -> torch.Tensor:
    """Zeros before the sequence axis (-2) of a [B, H, T, D] tensor."""
    if amount == 0:
        return tensor
    pad = tensor.new_zeros((*tensor.shape[:2], amount, tensor.shape[-1]))
    return torch.cat([pad, tensor], dim=-2)


def join_rows(
    batch: DynamicCache, mask: torch.Tensor, row: DynamicCache, row_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor]:
    """Append a one-row cache to the batch, left-padding whichever is shorter."""
    length, row_length = mask.shape[1], row_mask.shape[1]
    width = max(length, row_length)
    merged = [
        (
            torch.cat([_pad_left(k, width - length), _pad_left(rk, width - row_length)]),
            torch.cat([_pad_left(v, width - length), _pad_left(rv, width - row_length)]),
        )
        for (k, v), (rk, rv) in zip(layers_of(batch), layers_of(row), strict=True)
    ]
    masks = [
        torch.nn.functional.pad(mask, (width - length, 0)),
        torch.nn.functional.pad(row_mask, (width - row_length, 0)),
    ]
    return DynamicCache(ddp_cache_data=merged), torch.cat(masks)


def keep_rows(
    batch: DynamicCache, mask: torch.Tensor, rows: list[int]
) -> tuple[DynamicCache, torch.Tensor]:
    """Only `rows` of the batch, with columns no remaining row attends to trimmed away."""
    index = torch.as_tensor(rows, dtype=torch.long, device=mask.device)
    mask = mask.index_select(0, index)
    start = int(mask.any(dim=0).nonzero()[0]) if mask.numel() else 0
    layers = [
        (k.index_select(0, index)[..., start:, :], v.index_select(0, index)[..., start:, :])
        for k, v in layers_of(batch)
    ]
    return DynamicCache(ddp_cache_data=layers), mask[:, start:]
