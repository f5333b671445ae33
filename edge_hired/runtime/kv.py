"""A model's cache as plain per-layer tensors, and the batch's padded cache.

Two kinds of layer: attention layers hold keys and values, one column per token
(`LayerKV`); linear-attention layers (Qwen3.5's Gated DeltaNet) hold a `LinearState` of fixed
size, the causal conv's last inputs and the recurrent state, with no sequence axis. A cache is
rebuilt as transformers' own `DynamicCache` with the same layer kinds (`DynamicLayer`,
`LinearAttentionLayer`), as `DynamicCache(config=...)` lays them out, so the stock forward reads
it (transformers 5.20.2 and 5.23 store these layers alike).

A cached prefix is stored as tensors no generation ever writes to: `DynamicCache` grows keys by
`torch.cat`, which allocates, but writes a linear state in place at every step, so
`fresh_cache` copies every tensor in and a later request can never change what the next one
reuses. Rows of a batch are left-padded to one length and masked; rows join and leave between
decode steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import (
    CacheLayerMixin,
    LinearAttentionCacheLayerMixin,
    LinearAttentionLayer,
)

LayerKV = tuple[torch.Tensor, torch.Tensor]  # [B, heads, T, head_dim] each


@dataclass(frozen=True)
class LinearState:
    """A linear-attention layer's state after the tokens it has seen: the same size at any
    length, one row per sequence, built from that row's tokens alone."""

    conv: torch.Tensor  # [B, conv_dim, kernel]: the causal conv's last `kernel` inputs
    recurrent: torch.Tensor  # [B, value_heads, key_head_dim, value_head_dim] (float32 here)


Layer = LayerKV | LinearState


def layers_of(cache: DynamicCache) -> list[Layer]:
    """The cache's per-layer tensors (no copy)."""
    return [_layer_of(layer) for layer in cache.layers]


def _layer_of(layer: Any) -> Layer:
    if not isinstance(layer, LinearAttentionCacheLayerMixin):
        return layer.keys, layer.values
    if isinstance(layer, CacheLayerMixin) or layer.number_of_states != 1:
        kind = f"{type(layer).__name__} with {layer.number_of_states} state(s)"
        raise ValueError(f"cache layer: expected keys and values or one linear state, got {kind}")
    return LinearState(layer.conv_states[0], layer.recurrent_states[0])


def empty_cache(config: Any) -> DynamicCache:
    """An empty cache for a model: one that knows its linear-attention layers where it has any
    (their forward looks the layer's state up by index), else the plain lazy one."""
    text = config.get_text_config(decoder=True)
    if "linear_attention" in (getattr(text, "layer_types", None) or ()):
        return DynamicCache(config=text)
    return DynamicCache()


def fresh_cache(layers: list[Layer]) -> DynamicCache:
    """A new cache holding copies of `layers` (an empty prefix gives an empty cache)."""
    if not layers or _empty(layers[0]):
        return DynamicCache()
    return _cache_of([_copy(layer) for layer in layers])


def _empty(layer: Layer) -> bool:
    return not isinstance(layer, LinearState) and layer[0].shape[-2] == 0


def _copy(layer: Layer) -> Layer:
    if isinstance(layer, LinearState):
        return layer  # `_linear_layer` copies it into buffers of its own
    return layer[0].clone(), layer[1].clone()


def _cache_of(layers: list[Layer]) -> DynamicCache:
    """A `DynamicCache` of these layers: keys and values as given, linear states copied."""
    pairs = [(None, None) if isinstance(layer, LinearState) else layer for layer in layers]
    cache = DynamicCache(ddp_cache_data=pairs)  # a linear slot is an empty DynamicLayer here
    for index, layer in enumerate(layers):
        if isinstance(layer, LinearState):
            cache.layers[index] = _linear_layer(layer)
    return cache


def _linear_layer(state: LinearState) -> LinearAttentionLayer:
    """A linear-attention cache layer holding a copy of `state`, as after a prefill.

    Its first updates allocate the layer's own buffers (kernel = the conv state's width) and
    copy the state in; the decode steps then write those buffers in place.
    """
    layer = LinearAttentionLayer()
    layer.update_conv_state(state.conv)
    layer.update_recurrent_state(state.recurrent)
    return layer


def tensors_of(layer: Layer) -> tuple[torch.Tensor, ...]:
    """The tensors a layer holds."""
    return (layer.conv, layer.recurrent) if isinstance(layer, LinearState) else layer


def nbytes(layers: list[Layer]) -> int:
    """Bytes the tensors hold (keys and values, and the linear layers' states)."""
    return sum(t.numel() * t.element_size() for layer in layers for t in tensors_of(layer))


def _pad_left(tensor: torch.Tensor, amount: int) -> torch.Tensor:
    """Zeros before the sequence axis (-2) of a [B, H, T, D] tensor."""
    if amount == 0:
        return tensor
    pad = tensor.new_zeros((*tensor.shape[:2], amount, tensor.shape[-1]))
    return torch.cat([pad, tensor], dim=-2)


def _join_layer(layer: Layer, row: Layer, pad: int, row_pad: int) -> Layer:
    """One layer of the batch and one of the new row, stacked along the batch axis.

    Keys and values are left-padded to a shared width (the mask hides the padding from every
    attention layer). A linear state has no sequence axis and is stacked as it is: exact, since
    a row's state was built from its own tokens alone, and a decode step (one token per row)
    updates each row's state from that row's token only; the padding never reaches it.
    """
    if isinstance(layer, LinearState):
        conv = torch.cat([layer.conv, row.conv])
        return LinearState(conv, torch.cat([layer.recurrent, row.recurrent]))
    (k, v), (rk, rv) = layer, row
    keys = torch.cat([_pad_left(k, pad), _pad_left(rk, row_pad)])
    return keys, torch.cat([_pad_left(v, pad), _pad_left(rv, row_pad)])


def join_rows(
    batch: DynamicCache, mask: torch.Tensor, row: DynamicCache, row_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor]:
    """Append a one-row cache to the batch, left-padding whichever is shorter."""
    length, row_length = mask.shape[1], row_mask.shape[1]
    width = max(length, row_length)
    pads = width - length, width - row_length
    merged = [
        _join_layer(layer, other, *pads)
        for layer, other in zip(layers_of(batch), layers_of(row), strict=True)
    ]
    masks = [
        torch.nn.functional.pad(mask, (pads[0], 0)),
        torch.nn.functional.pad(row_mask, (pads[1], 0)),
    ]
    return _cache_of(merged), torch.cat(masks)


def _keep_layer(layer: Layer, index: torch.Tensor, start: int) -> Layer:
    """The kept rows of one layer; keys and values from column `start` on."""
    if isinstance(layer, LinearState):
        conv, recurrent = layer.conv.index_select(0, index), layer.recurrent.index_select(0, index)
        return LinearState(conv, recurrent)
    k, v = layer
    return k.index_select(0, index)[..., start:, :], v.index_select(0, index)[..., start:, :]


def keep_rows(
    batch: DynamicCache, mask: torch.Tensor, rows: list[int]
) -> tuple[DynamicCache, torch.Tensor]:
    """Only `rows` of the batch, with columns no remaining row attends to trimmed away."""
    index = torch.as_tensor(rows, dtype=torch.long, device=mask.device)
    mask = mask.index_select(0, index)
    start = int(mask.any(dim=0).nonzero()[0]) if mask.numel() else 0
    layers = [_keep_layer(layer, index, start) for layer in layers_of(batch)]
    return _cache_of(layers), mask[:, start:]
