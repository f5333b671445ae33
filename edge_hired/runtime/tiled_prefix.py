"""The visual prefix of a tiled model: kept patch blocks -> projector -> the expanded prompt.

The stock model pixel-shuffles every tile (each LLM token = a merge x merge block of patches,
channels ordered by the block's rows then columns) and projects all of them. Here only the kept
tokens' blocks are gathered (`TileGeometry.token_patches`) and projected, in the stock order.
The prompt's one image placeholder becomes the family's expansion with the kept counts per
partition (`hired.tile_prompts`): markers as text, one image token per kept token, which the
projected tokens then fill in order. With every token kept this is the stock prompt and the
stock features.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import Selection
from edge_hired.hired.tile_prompts import image_prompt
from edge_hired.hired.tile_select import kept_counts
from edge_hired.hired.tiles import TileGeometry
from edge_hired.runtime.loading import VlmParts
from edge_hired.runtime.vision import VisionOutput


def block_features(
    features: torch.Tensor, geometry: TileGeometry, tokens: np.ndarray
) -> torch.Tensor:
    """[K, merge^2 x C]: each (partition, token) row's patch block, as the pixel shuffle lays it."""
    patches = geometry.token_patches()[tokens[:, 1]]  # [K, merge^2]
    device = features.device
    part = torch.as_tensor(tokens[:, 0], device=device)[:, None]
    gathered = features[part, torch.as_tensor(patches, device=device)]  # [K, merge^2, C]
    return gathered.reshape(len(tokens), -1)


def tiled_visual_sequence(parts: VlmParts, vision: VisionOutput, chosen: Selection) -> torch.Tensor:
    """[K, D_text] projected kept tokens in the order the stock model feeds them."""
    geometry = chosen.geometry
    if not isinstance(geometry, TileGeometry):
        raise InvalidArgumentError(expected("selection geometry", "a TileGeometry", geometry))
    order = np.asarray(chosen.order)
    return parts.projector(block_features(vision.features, geometry, order))


def expansion_ids(parts: VlmParts, chosen: Selection) -> torch.Tensor:
    """Token ids of the image placeholder's expansion with the kept counts per partition."""
    text = image_prompt(chosen.geometry, kept_counts(chosen))
    ids = parts.processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")
    return ids["input_ids"][0]


@torch.inference_mode()
def tiled_prefix_embeddings(
    parts: VlmParts, ids: torch.Tensor, vision: VisionOutput, chosen: Selection
) -> torch.Tensor:
    """[1, P, D]: the text before the image, then the expansion with the kept tokens in it."""
    all_ids = torch.cat([ids.cpu(), expansion_ids(parts, chosen)]).to(parts.device)
    embeds = parts.llm.get_input_embeddings()(all_ids)
    slots = torch.nonzero(all_ids == parts.facts.image_token_id).flatten()
    if len(slots) != chosen.num_kept:
        raise InvalidArgumentError(
            expected("image tokens in the expanded prompt", chosen.num_kept, len(slots))
        )
    visual = tiled_visual_sequence(parts, vision, chosen)
    embeds[slots] = visual.to(embeds.dtype)
    return embeds[None]
