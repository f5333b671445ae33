"""The server's pure parts: padded batch caches, the byte-bounded LRU, detokenizing, admission."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from edge_hired.runtime.kv import fresh_cache, join_rows, keep_rows, layers_of, nbytes
from edge_hired.runtime.sampling import Sampler, SamplingOptions
from edge_hired.serve.admission import Cost, MemoryGate
from edge_hired.serve.detokenize import TextTracker
from edge_hired.serve.prefix_cache import ByteLRU


def cache_of(length: int, value: float, layers: int = 2) -> DynamicCache:
    tensor = torch.full((1, 2, length, 4), value)
    return DynamicCache(ddp_cache_data=[(tensor, tensor + 100) for _ in range(layers)])


def test_join_left_pads_the_shorter_rows_and_masks_the_padding() -> None:
    batch, mask = cache_of(3, 1.0), torch.ones(1, 3, dtype=torch.long)
    batch, mask = join_rows(batch, mask, cache_of(5, 2.0), torch.ones(1, 5, dtype=torch.long))
    assert mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    keys = layers_of(batch)[0][0]
    assert keys.shape == (2, 2, 5, 4)
    assert keys[0, :, :2].eq(0).all() and keys[0, :, 2:].eq(1).all() and keys[1].eq(2).all()
    assert layers_of(batch)[1][1][1].eq(102).all()


def test_keep_rows_drops_rows_and_columns_nobody_attends_to() -> None:
    batch, mask = cache_of(3, 1.0), torch.ones(1, 3, dtype=torch.long)
    batch, mask = join_rows(batch, mask, cache_of(5, 2.0), torch.ones(1, 5, dtype=torch.long))
    batch, mask = keep_rows(batch, mask, [0])
    assert mask.tolist() == [[1, 1, 1]]
    assert layers_of(batch)[0][0].shape == (1, 2, 3, 4) and layers_of(batch)[0][0].eq(1).all()


def test_fresh_cache_is_a_copy_that_later_updates_never_reach() -> None:
    stored = layers_of(cache_of(4, 3.0))
    cache = fresh_cache(stored)
    cache.layers[0].keys.add_(1)  # even an in-place write to the copy
    cache.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4), 0)
    assert stored[0][0].eq(3).all() and stored[0][0].shape[-2] == 4
    assert nbytes(stored) == 2 * 2 * (2 * 4 * 4) * 4


def test_byte_lru_evicts_least_recently_used_and_skips_oversized() -> None:
    lru = ByteLRU(100)
    lru.put("a", 1, 40)
    lru.put("b", 2, 40)
    assert lru.get("a") == 1  # b is now the oldest
    lru.put("c", 3, 40)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.bytes_used == 80
    lru.put("huge", 4, 101)
    assert lru.get("huge") is None and lru.evict(50) == 80 and len(lru) == 0


def test_memory_gate_waits_when_in_flight_kv_would_pass_the_cap() -> None:
    lru = ByteLRU(1000)
    gate = MemoryGate(1000, lru)
    one = Cost(kv_bytes=300, rest_bytes=600)
    assert gate.try_admit(one)
    assert not gate.try_admit(Cost(kv_bytes=300, rest_bytes=600))
    gate.release(one)
    lru.put("x", "cached", 200)
    assert gate.try_admit(Cost(kv_bytes=300, rest_bytes=600)) and lru.bytes_used == 0


def test_text_tracker_holds_back_possible_stops_and_cuts_at_one() -> None:
    words = {1: "he", 2: "llo", 3: " wor", 4: "ld"}
    tracker = TextTracker(lambda ids: "".join(words[i] for i in ids), ("wor",))
    sent = [tracker.feed(i) for i in (1, 2, 3)]
    assert "".join(sent) == "hello " and tracker.stopped
    plain = TextTracker(lambda ids: "".join(words[i] for i in ids))
    assert "".join(plain.feed(i) for i in (1, 2, 3, 4)) + plain.finish() == "hello world"


def test_seeded_sampling_repeats_and_greedy_is_argmax() -> None:
    logits = torch.tensor([0.0, 2.0, 1.0, 0.5])
    options = SamplingOptions(do_sample=True, temperature=1.0, top_p=0.9, seed=7)
    first, second = Sampler(options), Sampler(options)
    draws = [first.choose(logits) for _ in range(20)]
    assert draws == [second.choose(logits) for _ in range(20)]
    assert len(set(draws)) > 1 and 0 not in draws  # sampled, and token 0 is outside top-p 0.9
    assert Sampler().choose(logits) == 1
