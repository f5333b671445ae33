"""Turn kept tokens into the LLM's input embeddings, in the stock model's order.

The projector is a per-token MLP, so it runs on kept tokens only; newline positions get the
model's `image_newline` vector; the visual sequence replaces the prompt's single image token.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import Selection


def merged_features(features: torch.Tensor, selection: Selection) -> torch.Tensor:
    """Apply PruMerge's merge weights (if any) to the kept tokens' vision features.

    The weights and indices come from numpy on the host; they are moved to the features' device
    (CUDA when the encoder ran in-process on a GPU) rather than the features to the host.
    """
    if selection.merge is None:
        return features
    merged = features.clone()
    device = features.device
    for part, (neighbours, weights) in enumerate(selection.merge):
        if len(neighbours):
            w = torch.as_tensor(weights, dtype=features.dtype, device=device)[..., None]
            mixed = (features[part][torch.as_tensor(neighbours, device=device)] * w).sum(dim=1)
            merged[part, torch.as_tensor(selection.kept[part], device=device)] = mixed
    return merged


def visual_sequence(
    features: torch.Tensor,
    selection: Selection,
    projector: Callable[[torch.Tensor], torch.Tensor],
    image_newline: torch.Tensor | None,
) -> torch.Tensor:
    """[L, D_text] embeddings of the kept visual tokens (and newlines) in packing order.

    The packing order is host data (numpy); only integer indices move to the tensors' devices,
    so no device tensor is read back to the host here.
    """
    order = np.asarray(selection.order)
    token_rows = np.flatnonzero(order[:, 0] >= 0)
    newline_rows = np.flatnonzero(order[:, 0] < 0)
    kept = torch.as_tensor(order[token_rows], device=features.device)
    vision = merged_features(features, selection)[kept[:, 0], kept[:, 1]]
    projected = projector(vision)
    out = projected.new_empty((len(order), projected.shape[-1]))
    out[torch.as_tensor(token_rows, device=out.device)] = projected
    if len(newline_rows):
        if image_newline is None:
            raise InvalidArgumentError(
                "packing order has newlines but the model has no image_newline"
            )
        out[torch.as_tensor(newline_rows, device=out.device)] = image_newline.to(out)
    return out


def image_token_position(input_ids: torch.Tensor, image_token_id: int) -> int:
    """Index of the prompt's one image placeholder."""
    hits = np.flatnonzero(input_ids.cpu().numpy() == image_token_id)
    if len(hits) != 1:
        raise InvalidArgumentError(expected("image placeholders in the prompt", 1, len(hits)))
    return int(hits[0])


def splice_visual(text_embeds: torch.Tensor, position: int, visual: torch.Tensor) -> torch.Tensor:
    """[1, T - 1 + L, D]: the text embeddings with the placeholder replaced by the visual run."""
    visual = visual.to(text_embeds.dtype)
    return torch.cat([text_embeds[:position], visual, text_embeds[position + 1 :]])[None]
