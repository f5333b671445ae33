"""Decode on a preallocated static KV cache with a compiled one-token step (issue 19).

The eager engine grows a `DynamicCache` by `torch.cat` every step, with shapes that change
every step; nothing can be compiled or captured. Here a batch's KV lives in transformers'
`StaticCache`, allocated whole for a bucket (`planner.buckets`: rows x positions) and written in
place, so the step has one shape per bucket: `torch.compile(fullgraph=True, dynamic=False)`
compiles it once per bucket (and on CUDA captures it as a CUDA graph) and every later request
of that bucket reuses both the graph and the cache tensors.

Rows are laid out as in the eager batch (left-padded to a shared width, masked), starting at
column 0; every row writes its next token at the same column (`width`), each at its own
position ([B, 1], or [4, B, 1] for the Qwen-VL families' M-RoPE rows: the sequence index the
mask reads, then t / h / w = index + the row's own rope delta). Joining and dropping rows (rare
next to steps) go through the eager helpers of `runtime.kv` on views of the buffers and are
copied back in place. Columns past `width` hold stale values of earlier requests: causality
hides them (the query sits at column `width`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache, StaticCache

from edge_hired.planner.buckets import Bucket, bucket_for
from edge_hired.runtime.compile_policy import Compiler, GuardedStep, torch_compiler
from edge_hired.runtime.kv import LayerKV, join_rows, keep_rows, layers_of
from edge_hired.runtime.positions import (
    TEXT_POSITIONS,
    RopePositions,
    TextPositions,
    step_positions,
)

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

Embed = Callable[[torch.Tensor], torch.Tensor]  # token ids [B, 1] -> embeddings [B, 1, D]
Scheme = TextPositions | RopePositions


def _step(
    llm: torch.nn.Module,
    cache: StaticCache,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    column: torch.Tensor,
) -> torch.Tensor:
    """One token for every row of the bucket: logits [rows, V] in the model's dtype."""
    for layer in cache.layers:
        layer.cumulative_length.copy_(column)  # where this step writes, whatever came before
    out = llm(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1]


class StaticDecoder:
    """One model's static caches (one per bucket, kept for reuse) and its guarded step."""

    def __init__(self, llm: torch.nn.Module, compiler: Compiler, label: str = "the model") -> None:
        self.llm = llm
        self.caches: dict[Bucket, StaticCache] = {}
        self.step = GuardedStep(self._eager, compiler, label)

    def _eager(self, *args: torch.Tensor) -> torch.Tensor:
        return _step(self.llm, *args)

    def cache(self, bucket: Bucket, like: torch.Tensor) -> StaticCache:
        """The bucket's cache, allocated whole on first use and the same tensors ever after."""
        if bucket not in self.caches:
            config = self.llm.config.get_text_config(decoder=True)
            cache = StaticCache(config=config, max_cache_len=bucket.length)
            heads, head_dim = like.shape[1], like.shape[-1]
            cache.early_initialization(bucket.rows, heads, head_dim, like.dtype, like.device)
            self.caches[bucket] = cache
        return self.caches[bucket]

    def allocated_bytes(self) -> int:
        """Bytes of every bucket's cache held now."""
        return sum(static_cache_bytes(cache) for cache in self.caches.values())


def static_decoder_for(target: Target, llm: torch.nn.Module) -> StaticDecoder | None:
    """The target's static decoder, or None when it decodes eagerly."""
    if not target.compile_decode:
        return None
    quantized = target.quantization != "none"
    label = f"bitsandbytes {target.quantization}" if quantized else "this model's decode step"
    return StaticDecoder(llm, torch_compiler(target.device.type), label)


def static_cache_bytes(cache: StaticCache) -> int:
    """Bytes of a static cache's key and value tensors."""
    return sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )


@dataclass
class StaticRows:
    """A batch's rows in a bucket's static cache: `width` columns used, a [rows, length] mask."""

    decoder: StaticDecoder
    bucket: Bucket
    cache: StaticCache
    mask: torch.Tensor  # [bucket.rows, bucket.length] long; ones past `width` and in spare rows
    rows: int
    width: int

    @classmethod
    def load(
        cls, decoder: StaticDecoder, layers: list[LayerKV], mask: torch.Tensor, length: int
    ) -> StaticRows:
        """The rows of `layers` / `mask` copied into the bucket that holds `length` positions."""
        rows, width = mask.shape
        bucket = bucket_for(rows, max(length, width + 1))
        cache = decoder.cache(bucket, layers[0][0])
        for layer, (keys, values) in zip(cache.layers, layers, strict=True):
            layer.keys[:rows, :, :width].copy_(keys)
            layer.values[:rows, :, :width].copy_(values)
        full = mask.new_ones((bucket.rows, bucket.length))
        full[:rows, :width] = mask
        return cls(decoder, bucket, cache, full, rows, width)

    def layers(self) -> list[LayerKV]:
        """Views of the used rows and columns (valid until the next load into this bucket)."""
        r, w = self.rows, self.width
        return [(layer.keys[:r, :, :w], layer.values[:r, :, :w]) for layer in self.cache.layers]

    def used_mask(self) -> torch.Tensor:
        return self.mask[: self.rows, : self.width]

    def joined(self, cache: DynamicCache, mask: torch.Tensor, reserve: int) -> StaticRows:
        """These rows and a prefilled one with `reserve` tokens to come, in a bucket for all.

        The length bucket never shrinks while the batch lives (no copy back and forth).
        """
        mine = DynamicCache(ddp_cache_data=self.layers())
        merged, merged_mask = join_rows(mine, self.used_mask(), cache, mask)  # new tensors
        length = max(self.bucket.length, merged_mask.shape[1] + reserve)
        return StaticRows.load(self.decoder, layers_of(merged), merged_mask, length)

    def kept(self, rows: list[int]) -> StaticRows:
        """Only `rows`, trimmed to the columns they use, in the same length bucket."""
        mine = DynamicCache(ddp_cache_data=self.layers())
        kept, kept_mask = keep_rows(mine, self.used_mask(), rows)  # new tensors
        return StaticRows.load(self.decoder, layers_of(kept), kept_mask, self.bucket.length)

    def grown(self) -> StaticRows:
        """The same rows in the next longer bucket (a row outgrew its reserve)."""
        return StaticRows.load(self.decoder, self.layers(), self.used_mask(), self.width + 1)

    def step(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Write each row's token at column `width`; logits [rows, V] float32."""
        spare = self.bucket.rows - self.rows
        embeds = torch.nn.functional.pad(embeds, (0, 0, 0, 0, 0, spare))
        positions = torch.nn.functional.pad(positions, (0, 0, 0, spare))  # [.., B, 1]: on B
        column = torch.tensor(self.width, dtype=torch.long, device=embeds.device)
        args = (self.cache, embeds, self.mask, positions, column)
        logits = self.decoder.step(self.bucket, *args)
        self.width += 1
        # a copy: a CUDA graph writes its next replay's logits into the same output buffer
        return logits[: self.rows].to(torch.float32, copy=True)

    @property
    def full(self) -> bool:
        """No column left for another step."""
        return self.width >= self.bucket.length


class StaticBatch:
    """`engine.Batch`'s rows on static caches: the same join / keep / step, compiled steps."""

    def __init__(self, decoder: StaticDecoder, embed: Embed) -> None:
        self.decoder, self.embed = decoder, embed
        self.rows: StaticRows | None = None

    def __len__(self) -> int:
        return 0 if self.rows is None else self.rows.rows

    @torch.inference_mode()
    def join(self, cache: DynamicCache, mask: torch.Tensor, reserve: int) -> None:
        """Add a prefilled row that will decode up to `reserve` more tokens."""
        if self.rows is None:
            length = mask.shape[1] + reserve
            self.rows = StaticRows.load(self.decoder, layers_of(cache), mask, length)
            return
        self.rows = self.rows.joined(cache, mask, reserve)

    @torch.inference_mode()
    def keep(self, rows: list[int]) -> None:
        """Only `rows` stay."""
        self.rows = self.rows.kept(rows) if rows else None

    @torch.inference_mode()
    def step(
        self, tokens: list[int], positions: list[int], schemes: list[Scheme] | None = None
    ) -> torch.Tensor:
        """Each row's token at its position: logits [B, V] float32.

        `schemes` (default: text) turn the sequence indices into what the LLM reads: [B, 1], or
        [4, B, 1] M-RoPE rows (each its own rope delta), a fixed shape per bucket either way.
        """
        if self.rows.full:
            self.rows = self.rows.grown()
        device = self.rows.mask.device
        ids = torch.as_tensor(tokens, dtype=torch.long, device=device)[:, None]
        where = step_positions(schemes or [TEXT_POSITIONS] * len(tokens), positions, device)
        return self.rows.step(self.embed(ids), where)
