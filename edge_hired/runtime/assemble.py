"""Turn kept tokens into the LLM's input embeddings, in the stock model's order.

The projector is a per-token MLP, so it runs on kept tokens only; newline positions get the
model's `image_newline` vector; the visual sequence replaces the prompt's single image token.
A kept position of LLaVA-OneVision's shrunken grid is the bilinear blend of four projected source
tokens (the stock model projects, then resizes): only those sources are projected, and they are
blended in the order torch's CPU kernel uses, so a 100% run is the stock sequence.
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
    projected = projected_tokens(
        merged_features(features, selection), order[token_rows], selection, projector
    )
    out = projected.new_empty((len(order), projected.shape[-1]))
    out[torch.as_tensor(token_rows, device=out.device)] = projected
    if len(newline_rows):
        if image_newline is None:
            raise InvalidArgumentError(
                "packing order has newlines but the model has no image_newline"
            )
        out[torch.as_tensor(newline_rows, device=out.device)] = image_newline.to(out)
    return out


def projected_tokens(
    features: torch.Tensor,
    tokens: np.ndarray,
    selection: Selection,
    projector: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """[K, D_text] projected features of the (partition, token) rows, resized positions blended."""
    geometry = selection.geometry
    resized = np.zeros(len(tokens), dtype=bool)
    if geometry is not None and geometry.resized is not None:
        resized = tokens[:, 0] >= 1
    if not resized.any():
        return projector(_gather(features, tokens))
    positions = geometry.position_index()[tokens[resized, 0], tokens[resized, 1]]
    sources, weights_y, weights_x = geometry.sub_taps(positions)
    wanted = np.concatenate([tokens[~resized], sources.reshape(-1, 2)])
    unique, inverse = np.unique(wanted, axis=0, return_inverse=True)
    values = projector(_gather(features, unique))
    direct, corners = np.split(inverse.reshape(-1), [int((~resized).sum())])
    out = values.new_empty((len(tokens), values.shape[-1]))
    out[torch.as_tensor(np.flatnonzero(~resized), device=out.device)] = values[direct]
    taps = [values[corners.reshape(-1, 4)[:, c]] for c in range(4)]
    blended = blend(taps, weights_y, weights_x).to(values.dtype)
    out[torch.as_tensor(np.flatnonzero(resized), device=out.device)] = blended
    return out


def _gather(features: torch.Tensor, tokens: np.ndarray) -> torch.Tensor:
    """features[p, t] for each (p, t) row; the indices move to the features' device."""
    index = torch.as_tensor(tokens, device=features.device)
    return features[index[:, 0], index[:, 1]]


def blend(
    corners: list[torch.Tensor], weights_y: np.ndarray, weights_x: np.ndarray
) -> torch.Tensor:
    """Bilinear blend of [K, D] corners (y0x0, y0x1, y1x0, y1x1) as torch's CPU kernel orders it.

    fma(wy0, fma(wx0, v00, wx1 * v01), wy1 * fma(wx0, v10, wx1 * v11)) in float32; each fused
    step is computed in float64 (exact product) and rounded once, as `hired.resize.blend` does.
    """
    device = corners[0].device
    wy = torch.as_tensor(weights_y, dtype=torch.float32, device=device)[..., None]
    wx = torch.as_tensor(weights_x, dtype=torch.float32, device=device)[..., None]
    v00, v01, v10, v11 = (c.float() for c in corners)
    top = _fused(wx[:, 0], v00, wx[:, 1] * v01)
    bottom = _fused(wx[:, 0], v10, wx[:, 1] * v11)
    return _fused(wy[:, 0], top, wy[:, 1] * bottom)


def _fused(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32(a * b + c) rounded once (float64 holds the float32 product exactly)."""
    return (a.double() * b.double() + c.double()).float()


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
