"""`runtime.kv` on a cache that mixes attention layers with linear-attention layers (Qwen3.5).

The caches are transformers' own, laid out from a Qwen3.5 text config and filled through the
calls the stock forward makes (`update_conv_state`, `update_recurrent_state`, `update`), with
values that say which row and which tensor they are, so every check is exact.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, Qwen3_5TextConfig
from transformers.cache_utils import DynamicLayer, LinearAttentionLayer

from edge_hired.runtime.kv import (
    LinearState,
    empty_cache,
    fresh_cache,
    join_rows,
    keep_rows,
    layers_of,
    nbytes,
)

CONFIG = Qwen3_5TextConfig(layer_types=["linear_attention", "full_attention"], num_hidden_layers=2)
CONV = (6, 4)  # conv channels, kernel
RECURRENT = (2, 3, 5)  # value heads, key head dim, value head dim
KV = (2, 4)  # KV heads, head dim


def hybrid_cache(length: int, value: float) -> DynamicCache:
    """One row: a linear layer (conv = value, recurrent = value + 0.5), then keys and values."""
    cache = DynamicCache(config=CONFIG)
    cache.update_conv_state(torch.full((1, *CONV), value), 0)
    cache.update_recurrent_state(torch.full((1, *RECURRENT), value + 0.5), 0)
    keys = torch.full((1, KV[0], length, KV[1]), value)
    cache.update(keys, keys + 100, 1)
    return cache


def ones(length: int) -> torch.Tensor:
    return torch.ones(1, length, dtype=torch.long)


def test_layers_of_reads_each_layer_as_its_kind() -> None:
    cache = hybrid_cache(3, 1.0)
    state, (keys, values) = layers_of(cache)
    assert isinstance(state, LinearState)
    assert state.conv is cache.layers[0].conv_states[0]  # no copy
    assert state.recurrent.shape == (1, *RECURRENT) and state.recurrent.eq(1.5).all()
    assert keys.shape == (1, KV[0], 3, KV[1]) and values.eq(101).all()


def test_join_stacks_linear_states_and_left_pads_only_keys_and_values() -> None:
    batch, mask = join_rows(hybrid_cache(3, 1.0), ones(3), hybrid_cache(5, 2.0), ones(5))
    assert mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert [type(layer) for layer in batch.layers] == [LinearAttentionLayer, DynamicLayer]
    state, (keys, _) = layers_of(batch)
    assert state.conv.shape == (2, *CONV) and state.recurrent.shape == (2, *RECURRENT)
    assert state.conv[0].eq(1).all() and state.conv[1].eq(2).all()
    assert state.recurrent[0].eq(1.5).all() and state.recurrent[1].eq(2.5).all()
    assert keys.shape == (2, KV[0], 5, KV[1]) and keys[0, :, :2].eq(0).all()
    assert batch.get_seq_length() == 5  # read from the attention layer, as the forward does
    assert batch.layers[0].has_previous_state[0]  # the next forward continues the state


def test_keep_rows_selects_the_linear_rows_and_trims_the_keys() -> None:
    batch, mask = join_rows(hybrid_cache(3, 1.0), ones(3), hybrid_cache(5, 2.0), ones(5))
    batch, mask = join_rows(batch, mask, hybrid_cache(2, 3.0), ones(2))
    kept, kept_mask = keep_rows(batch, mask, [0, 2])  # the longest row leaves
    assert kept_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    state, (keys, _) = layers_of(kept)
    assert state.conv[0].eq(1).all() and state.conv[1].eq(3).all()
    assert state.recurrent[0].eq(1.5).all() and state.recurrent[1].eq(3.5).all()
    assert keys.shape == (2, KV[0], 3, KV[1]) and keys[1, :, 0].eq(0).all()


def test_fresh_cache_copies_the_linear_state_that_decode_writes_in_place() -> None:
    stored = layers_of(hybrid_cache(4, 3.0))
    copy = fresh_cache(stored)
    assert [type(layer) for layer in copy.layers] == [LinearAttentionLayer, DynamicLayer]
    layer = copy.layers[0]
    assert layer.conv_states[0].data_ptr() != stored[0].conv.data_ptr()
    assert torch.equal(layer.conv_states[0], stored[0].conv)
    assert torch.equal(layer.recurrent_states[0], stored[0].recurrent)
    layer.conv_states[0].add_(1)  # as the decode's causal_conv1d_update does
    copy.update_recurrent_state(torch.zeros(1, *RECURRENT), 0)  # copy_ into its buffer
    copy.update(torch.zeros(1, KV[0], 1, KV[1]), torch.zeros(1, KV[0], 1, KV[1]), 1)
    assert stored[0].conv.eq(3).all() and stored[0].recurrent.eq(3.5).all()
    assert stored[1][0].shape[-2] == 4


def test_nbytes_counts_states_and_keys_and_values() -> None:
    length = 7
    conv = 6 * 4 * 4  # float32
    recurrent = 2 * 3 * 5 * 4
    keys_and_values = 2 * (2 * length * 4) * 4
    assert nbytes(layers_of(hybrid_cache(length, 1.0))) == conv + recurrent + keys_and_values


def test_empty_cache_knows_the_linear_layers_only_where_the_model_has_them() -> None:
    assert [type(layer) for layer in empty_cache(CONFIG).layers] == [
        LinearAttentionLayer,
        DynamicLayer,
    ]
    plain = Qwen3_5TextConfig(layer_types=["full_attention"] * 2, num_hidden_layers=2)
    assert empty_cache(plain).layers == []  # the lazy cache, as before
