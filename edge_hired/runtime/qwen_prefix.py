"""The visual prefix of a Qwen-VL prompt: preprocess, then prefill with the kept merge units.

The prefix (text up to `<|vision_start|>` plus the kept `<|image_pad|>` tokens) goes through the
stock model's own forward: ids with one placeholder per kept unit, the kept merged features (and
Qwen3-VL's DeepStack features at the same tokens) as `mm_encoder_outputs`, and the kept tokens'
stock 3-D positions from `prune_prompt`. Everything after the image continues from the unpruned
maximum + 1 (`RopePositions`), so keeping every unit is the stock model token for token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPooling

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import Selection
from edge_hired.hired.budget import resolve_budget
from edge_hired.hired.native_geometry import native_geometry
from edge_hired.hired.native_resize import resize_limits
from edge_hired.runtime.positions import RopePositions
from edge_hired.runtime.qwen_positions import prune_prompt
from edge_hired.runtime.qwen_vision import NativePixels, NativeVisionOutput


def native_preprocess(
    processor: Any,
    geometry: Any,
    picture: Image.Image,
    limits: tuple[int, int] | None = None,
    resize_budget: int | None = None,
) -> tuple[NativePixels, Any]:
    """The Qwen image processor's patches and grid, checked against our geometry.

    `limits` (min_pixels, max_pixels) override the processor's for the resize baseline.
    """
    size = None if limits is None else {"shortest_edge": limits[0], "longest_edge": limits[1]}
    extra = {} if size is None else {"size": size}
    batch = processor.image_processor(images=picture, return_tensors="pt", **extra)
    grid = batch["image_grid_thw"]
    if grid.tolist() != [list(geometry.grid_thw)]:
        want = f"[{list(geometry.grid_thw)}] (the geometry's)"
        raise InvalidArgumentError(expected("image_grid_thw", want, grid.tolist()))
    return NativePixels(batch["pixel_values"], grid, geometry, resize_budget), geometry


def resize_preprocess(
    processor: Any, facts: Any, picture: Image.Image, selection: Any
) -> tuple[NativePixels, Any]:
    """The resize baseline: the budget K of the full image, then the image shrunk to K tokens."""
    full = facts.geometry_for((picture.height, picture.width))
    budget = resolve_budget(full, selection.ratio, selection.tokens, selection.cap)
    limits = resize_limits(full, budget, facts.min_pixels)
    geometry = native_geometry(full.image_size, full.patch_size, full.merge, *limits)
    return native_preprocess(processor, geometry, picture, limits, budget)


def kept_encoder_outputs(vision: NativeVisionOutput, kept: np.ndarray) -> Any:
    """`mm_encoder_outputs["image"]`: merged and DeepStack features at the kept raster units."""
    index = torch.from_numpy(np.sort(np.asarray(kept, dtype=np.int64)))
    pooled = (vision.features[0][index.to(vision.features.device)],)
    if not vision.deepstack:
        return BaseModelOutputWithPooling(pooler_output=pooled)
    from transformers.models.qwen3_vl.modeling_qwen3_vl import (
        BaseModelOutputWithDeepstackFeatures,
    )

    layers = [(layer[index.to(layer.device)],) for layer in vision.deepstack]
    return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=layers)


def new_cache(model: Any) -> DynamicCache:
    """An empty cache that knows the LLM's layer kinds (Qwen3.5 mixes linear attention)."""
    return DynamicCache(config=model.config.get_text_config())


def expanded_prefix(ids: torch.Tensor, count: int, image_token_id: int) -> torch.Tensor:
    """The prompt's ids up to its image placeholder, then the placeholder once per merge unit, as
    the stock processor expands it (`prune_prompt` then keeps the kept units' columns)."""
    return torch.cat([ids, ids.new_full((count,), image_token_id)])


@torch.inference_mode()
def native_prefill(
    parts: Any, ids: torch.Tensor, vision: NativeVisionOutput, chosen: Selection
) -> tuple[int, RopePositions, Any]:
    """Prefill the prefix `ids` (up to the image) with the kept units: (length, positions, KV)."""
    model, device = parts.llm, parts.device
    unpruned = expanded_prefix(ids, chosen.num_valid, model.config.image_token_id)
    prompt = prune_prompt(model, unpruned[None], vision.grid_thw, chosen.kept[0])
    input_ids = prompt.input_ids.to(device)
    out = model(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        position_ids=prompt.position_ids.to(device),
        mm_encoder_outputs={"image": kept_encoder_outputs(vision, chosen.kept[0])},
        past_key_values=new_cache(model),
        use_cache=True,
        logits_to_keep=1,
    )
    positions = RopePositions(prompt.position_ids.cpu(), prompt.rope_delta)
    return input_ids.shape[1], positions, out.past_key_values
