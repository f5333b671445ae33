"""The one decode engine of `run` and `serve`: prefix prefill, suffix prefill, batched steps.

Work splits at the end of the image tokens (`runtime.prefix`). `Engine.prefill` computes the
*prefix* (text before the image plus the kept visual tokens) or takes it from an optional image
cache, then prefills the request's *suffix* on its own copy of that KV. A `Batch` holds rows
that decode together (left-padded, masked) and `decode_one_token` advances them all by one.
`run` is a batch of one over this (`runtime.generation.generate`); `serve` schedules many.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from transformers import DynamicCache

from edge_hired.hired import RESIZE, Selection
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.runtime.kv import (
    Layer,
    empty_cache,
    fresh_cache,
    join_rows,
    keep_rows,
    layers_of,
    nbytes,
)
from edge_hired.runtime.loading import VlmParts
from edge_hired.runtime.positions import (
    TEXT_POSITIONS,
    RopePositions,
    TextPositions,
    step_positions,
)
from edge_hired.runtime.prefix import (
    ImageInput,
    SelectionOptions,
    prefix_embeddings,
    preprocess,
    select,
    text_embeddings,
)
from edge_hired.runtime.qwen_prefix import native_prefill
from edge_hired.runtime.qwen_vision import NativeVisionOutput
from edge_hired.runtime.sampling import Sampler, SamplingOptions
from edge_hired.runtime.static_decode import StaticBatch, StaticDecoder
from edge_hired.runtime.vision import VisionOutput

Mark = Callable[[str], None]  # called with "preprocessed", "encoded", "selected"


class PrefixCache(Protocol):
    """What the engine needs of an image cache (the server's `ByteLRU` is one)."""

    def get(self, key: Hashable) -> Any | None: ...

    def put(self, key: Hashable, value: Any, nbytes: int) -> None: ...


@dataclass(frozen=True)
class Prefix:
    """KV of the prompt up to the end of the image tokens, and what the selection kept.

    `layers` are those a cache keeps (`runtime.kv`): keys and values, or a linear-attention
    layer's state after the prefix (Qwen3.5), which a request's suffix then continues from.
    """

    layers: list[Layer]
    length: int
    geometry: ImageGeometry | None = None
    chosen: Selection | None = None
    positions: TextPositions | RopePositions = TEXT_POSITIONS  # M-RoPE for the Qwen families

    @property
    def strategy(self) -> str:
        return self.chosen.strategy if self.chosen is not None else "none"

    @property
    def budget_tokens(self) -> int:
        return int(self.chosen.budget) if self.chosen is not None else 0

    @property
    def visual_tokens_total(self) -> int:
        return int(self.geometry.valid_counts().sum()) if self.geometry is not None else 0

    @property
    def visual_tokens_kept(self) -> int:
        return int(self.chosen.num_kept) if self.chosen is not None else 0


@dataclass
class Prefill:
    """One request after prefill: its own cache, mask and first logits."""

    cache: DynamicCache
    mask: torch.Tensor  # [1, T]
    logits: torch.Tensor  # [V] float32
    prefix: Prefix
    cache_hit: bool

    @property
    def prompt_tokens(self) -> int:
        """Positions the LLM attended to before answering (text and kept visual tokens)."""
        return int(self.mask.shape[1])

    @property
    def positions(self) -> TextPositions | RopePositions:
        """How this request's tokens are placed (the decode step asks it per new token)."""
        return self.prefix.positions


class Engine:
    """Prefill and decode on loaded `VlmParts` (checkpoint or bundle alike)."""

    def __init__(
        self,
        parts: VlmParts,
        cache: PrefixCache | None = None,
        static: StaticDecoder | None = None,
    ) -> None:
        self.parts = parts
        self.cache = cache
        self.static = static  # decode on static KV caches with a compiled step (issue 19)

    @property
    def eos_ids(self) -> frozenset[int]:
        """The ids that end an answer, from the model's generation config (as `generate`)."""
        eos = getattr(self.parts.llm.generation_config, "eos_token_id", None)
        return frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])

    def sampler(self, options: SamplingOptions) -> Sampler:
        """A request's sampler; EOS waits for the config's `min_new_tokens` (as `generate`)."""
        least = getattr(self.parts.llm.generation_config, "min_new_tokens", None) or 0
        return Sampler(options, self.eos_ids, int(least))

    @torch.inference_mode()
    def prefill(
        self,
        prefix_ids: torch.Tensor,
        suffix_ids: torch.Tensor,
        image: ImageInput | None,
        selection: SelectionOptions,
        mark: Mark | None = None,
    ) -> Prefill:
        """The request's prefix (cached or computed) plus its suffix, prefilled."""
        prefix, cache, hit = self._prefix(prefix_ids, image, selection, mark or _no_mark)
        device = self.parts.device
        total = prefix.length + len(suffix_ids)
        mask = torch.ones((1, total), dtype=torch.long, device=device)
        positions = prefix.positions.span(prefix.length, total, device)
        embeds = text_embeddings(self.parts, suffix_ids)[None]
        out = self._forward(embeds, mask, positions, cache)
        return Prefill(out.past_key_values, mask, out.logits[0, -1].float(), prefix, hit)

    @torch.inference_mode()
    def decode_one_token(
        self,
        cache: DynamicCache,
        mask: torch.Tensor,
        tokens: list[int],
        positions: list[int],
        schemes: list[TextPositions | RopePositions] | None = None,
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """One decode step for every row: (cache, mask, logits [B, V] float32).

        `positions` are the rows' sequence indices; `schemes` (default: text) turn them into
        what the LLM reads (M-RoPE rows continue from their unpruned maximum + 1).
        """
        device = self.parts.device
        ids = torch.as_tensor(tokens, dtype=torch.long, device=device)[:, None]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        where = step_positions(schemes or [TEXT_POSITIONS] * len(tokens), positions, device)
        out = self._forward(text_embeddings(self.parts, ids), mask, where, cache)
        return out.past_key_values, mask, out.logits[:, -1].float()

    def _forward(self, embeds, mask, positions, cache):
        return self.parts.llm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def _prefix(
        self, ids: torch.Tensor, image: ImageInput | None, selection: SelectionOptions, mark: Mark
    ) -> tuple[Prefix, DynamicCache, bool]:
        """The prefix, a KV cache of it that is the request's own, and whether it was cached.

        A prefix the image cache keeps is copied for the request (which grows its copy and
        writes its linear-attention states in place); one that is not kept hands its cache over
        as it is (no copy, no second prefix in memory).
        """
        if image is None:
            return Prefix([], 0), empty_cache(self.parts.llm.config), False
        key = ("prefix", image.sha256, selection, tuple(ids.tolist()))
        found = self._cached(image, key)
        if found is not None:
            return found, fresh_cache(found.layers), True
        prefix, cache = self._compute_prefix(ids, image, selection, mark)
        if self.cache is None or image.sha256 is None:
            return prefix, cache, False
        kept = replace(prefix, layers=layers_of(cache))
        self.cache.put(key, kept, nbytes(kept.layers))
        return kept, fresh_cache(kept.layers), False

    def _cached(self, image: ImageInput, key: Hashable) -> Any | None:
        if self.cache is None or image.sha256 is None:
            return None
        return self.cache.get(key)

    def _compute_prefix(
        self, ids: torch.Tensor, image: ImageInput, selection: SelectionOptions, mark: Mark
    ) -> tuple[Prefix, DynamicCache]:
        """The prefix's figures (no tensors) and its freshly prefilled KV cache."""
        geometry, vision = self._vision(image, mark, selection)
        chosen = select(geometry, vision, selection)
        mark("selected")
        if isinstance(vision, NativeVisionOutput):
            length, positions, cache = native_prefill(self.parts, ids, vision, chosen)
            return Prefix([], length, geometry, chosen, positions), cache
        embeds = prefix_embeddings(self.parts, ids, vision, chosen)
        length = embeds.shape[1]
        mask = torch.ones((1, length), dtype=torch.long, device=self.parts.device)
        positions = torch.arange(length, device=self.parts.device)[None]
        out = self._forward(embeds, mask, positions, DynamicCache())
        return Prefix([], length, geometry, chosen), out.past_key_values

    def _vision(
        self, image: ImageInput, mark: Mark, selection: SelectionOptions
    ) -> tuple[ImageGeometry, VisionOutput]:
        """Geometry and encoder output of the image, cached by the image bytes' sha256.

        The resize baseline encodes a smaller image: its key carries the budget.
        """
        resize = selection.strategy == RESIZE
        key = ("vision", image.sha256, (selection.ratio, selection.tokens, selection.cap) * resize)
        found = self._cached(image, key)
        if found is not None:
            return found
        pixels, geometry = preprocess(self.parts, image.picture, selection)
        mark("preprocessed")
        vision = self.parts.encoder(pixels)
        mark("encoded")
        if self.cache is not None and image.sha256 is not None:
            self.cache.put(key, (geometry, vision), vision.nbytes)
        return geometry, vision


class Batch:
    """Rows decoding together: one left-padded KV cache and mask; rows join and leave."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None
        self.static = None if engine.static is None else static_batch(engine)
        self.schemes: list[TextPositions | RopePositions] = []

    def __len__(self) -> int:
        if self.static is not None:
            return len(self.static)
        return 0 if self.mask is None else int(self.mask.shape[0])

    def join(self, prefill: Prefill, reserve: int = 0) -> None:
        """Add a prefilled request as the last row (`reserve`: the tokens it may decode)."""
        self.schemes.append(prefill.positions)
        if self.static is not None:
            self.static.join(prefill.cache, prefill.mask, reserve)
            prefill.cache = DynamicCache()  # copied into the static cache: free the growing one
            return None
        if self.mask is None:
            self.cache, self.mask = prefill.cache, prefill.mask
            return
        self.cache, self.mask = join_rows(self.cache, self.mask, prefill.cache, prefill.mask)

    def keep(self, rows: list[int]) -> None:
        """Only `rows` stay (the KV of the others is dropped)."""
        if len(rows) == len(self):
            return
        self.schemes = [self.schemes[r] for r in rows]
        if self.static is not None:
            return self.static.keep(rows)
        if not rows:
            self.cache, self.mask = None, None
            return
        self.cache, self.mask = keep_rows(self.cache, self.mask, rows)

    def step(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Feed each row its last token at its position; the next logits [B, V] float32."""
        if self.static is not None:
            return self.static.step(tokens, positions, self.schemes)
        self.cache, self.mask, logits = self.engine.decode_one_token(
            self.cache, self.mask, tokens, positions, self.schemes
        )
        return logits


def finish_reason(
    token: int, generated: int, max_tokens: int, eos_ids: frozenset[int]
) -> str | None:
    """ "stop" at an end-of-sequence id, "length" at `max_tokens`, else None (go on)."""
    if token in eos_ids:
        return "stop"
    if generated >= max_tokens:
        return "length"
    return None


def static_batch(engine: Engine) -> StaticBatch:
    """The static-cache rows of a batch on `engine` (its embeddings, its static decoder)."""
    return StaticBatch(engine.static, lambda ids: text_embeddings(engine.parts, ids))


def _no_mark(_name: str) -> None:
    return None
