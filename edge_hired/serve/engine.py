"""The model side of the server: prefixes (with the image cache), prefill, one batched step.

Work splits at the end of the image tokens. The *prefix* (text before the image plus the kept
visual tokens) is encoded, selected and prefilled once per image, selection and prefix text,
and its KV is kept in the `ByteLRU`; each request then prefills only its *suffix* on a fresh
copy of that KV, and decodes in a batch with other requests (left-padded, masked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import DynamicCache

from edge_hired.hired import Selection
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.runtime.assemble import visual_sequence
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.runtime.vision import VisionOutput
from edge_hired.serve.kv import LayerKV, fresh_cache, layers_of, nbytes
from edge_hired.serve.prefix_cache import ByteLRU


@dataclass(frozen=True)
class ImageInput:
    """A decoded image and the sha256 of the bytes it came from (the cache key)."""

    picture: Image.Image
    sha256: str

    @classmethod
    def from_bytes(cls, picture: Image.Image, data: bytes) -> ImageInput:
        return cls(picture, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Prefix:
    """KV of the prompt up to the end of the image tokens, and what the selection kept."""

    layers: list[LayerKV]
    length: int
    strategy: str = "none"
    budget_tokens: int = 0
    visual_tokens_total: int = 0
    visual_tokens_kept: int = 0


@dataclass
class Prefill:
    """One request after prefill: its own cache, mask, next position and first logits."""

    cache: DynamicCache
    mask: torch.Tensor  # [1, T]
    logits: torch.Tensor  # [V] float32
    prefix: Prefix
    cache_hit: bool


class Engine:
    """Prefill and decode on a loaded `Pipeline` (checkpoint or bundle alike)."""

    def __init__(self, pipeline: Pipeline, cache: ByteLRU) -> None:
        self.pipeline = pipeline
        self.parts = pipeline.parts
        self.cache = cache
        self.embed = self.parts.llm.get_input_embeddings()

    @torch.inference_mode()
    def prefill(
        self,
        prefix_ids: torch.Tensor,
        suffix_ids: torch.Tensor,
        image: ImageInput | None,
        selection: SelectionOptions,
    ) -> Prefill:
        """The request's prefix (cached or computed) plus its suffix, prefilled."""
        prefix, hit = self._prefix(prefix_ids, image, selection)
        cache = fresh_cache(prefix.layers)
        total = prefix.length + len(suffix_ids)
        mask = torch.ones((1, total), dtype=torch.long, device=self.parts.device)
        positions = torch.arange(prefix.length, total, device=self.parts.device)[None]
        embeds = self.embed(suffix_ids.to(self.parts.device))[None]
        out = self._forward(embeds, mask, positions, cache)
        return Prefill(out.past_key_values, mask, out.logits[0, -1].float(), prefix, hit)

    @torch.inference_mode()
    def step(
        self, cache: DynamicCache, mask: torch.Tensor, tokens: list[int], positions: list[int]
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """One decode step for every row: (cache, mask, logits [B, V] float32)."""
        device = self.parts.device
        ids = torch.as_tensor(tokens, dtype=torch.long, device=device)[:, None]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        where = torch.as_tensor(positions, dtype=torch.long, device=device)[:, None]
        out = self._forward(self.embed(ids), mask, where, cache)
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
        self, ids: torch.Tensor, image: ImageInput | None, selection: SelectionOptions
    ) -> tuple[Prefix, bool]:
        """The cached prefix for (image, selection, prefix text), or a newly computed one."""
        if image is None:
            return Prefix([], 0), False
        key = ("prefix", image.sha256, selection, tuple(ids.tolist()))
        found = self.cache.get(key)
        if found is not None:
            return found, True
        prefix = self._compute_prefix(ids, image, selection)
        self.cache.put(key, prefix, nbytes(prefix.layers))
        return prefix, False

    def _compute_prefix(
        self, ids: torch.Tensor, image: ImageInput, selection: SelectionOptions
    ) -> Prefix:
        geometry, vision = self._vision(image)
        chosen = self.pipeline.select(geometry, vision, selection)
        embeds = self._prefix_embeddings(ids, vision, chosen)
        length = embeds.shape[1]
        mask = torch.ones((1, length), dtype=torch.long, device=self.parts.device)
        positions = torch.arange(length, device=self.parts.device)[None]
        out = self._forward(embeds, mask, positions, DynamicCache())
        return Prefix(
            layers_of(out.past_key_values),
            length,
            chosen.strategy,
            int(chosen.budget),
            int(geometry.valid_counts().sum()),
            int(chosen.num_kept),
        )

    def _prefix_embeddings(
        self, ids: torch.Tensor, vision: VisionOutput, chosen: Selection
    ) -> torch.Tensor:
        """[1, P, D]: the text before the image, then the kept visual tokens."""
        text = self.embed(ids.to(self.parts.device))
        visual = visual_sequence(
            vision.features, chosen, self.parts.projector, self.parts.image_newline
        )
        return torch.cat([text, visual.to(text.dtype)])[None]

    def _vision(self, image: ImageInput) -> tuple[ImageGeometry, VisionOutput]:
        """Geometry and encoder output of the image, cached by the image bytes' sha256."""
        key = ("vision", image.sha256)
        found = self.cache.get(key)
        if found is not None:
            return found
        pixels, geometry = self.pipeline.preprocess(image.picture)
        vision = self.parts.encoder(pixels)
        size = vision.nbytes
        self.cache.put(key, (geometry, vision), size)
        return geometry, vision
