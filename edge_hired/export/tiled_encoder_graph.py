"""InternViT / SmolVLM's SigLIP as an export-ready module: features plus HiRED's signal rows.

Like `EncoderGraph`, it calls the stock modules explicitly, layer by layer, and computes the
signal at the two HiRED layers from that layer's own q/k projections (after InternViT's optional
q/k norm): CLS rows for InternViT, attention received for SigLIP. The outputs keep the stock
image order (tiles, global view last) and carry every patch (the pixel shuffle and projector run
on kept tokens at run time). SmolVLM's embeddings are taken for a full patch mask (one image's
tiles are never padded): its position ids are computed once here, exactly as the stock module
computes them for that mask, so the graph needs no bucketize.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_hired.export.encoder_graph import OUTPUT_NAMES_BY_SIGNAL
from edge_hired.runtime.cls_attention import cls_attention_rows
from edge_hired.runtime.received_attention import received_attention_rows
from edge_hired.runtime.tiled_facts import TiledFacts


def full_mask_position_ids(num_patches_per_side: int, side: int) -> torch.Tensor:
    """SmolVLM's position ids for an unpadded image of side x side patches (stock arithmetic)."""
    n = num_patches_per_side
    boundaries = torch.arange(1 / n, 1.0, 1 / n)
    step = 1.0 / torch.tensor([side])
    coords = torch.clamp(
        torch.arange(side, dtype=torch.float32)[None, :] * step[:, None], max=1 - 1e-6
    )
    buckets = torch.bucketize(coords[0], boundaries, right=True)
    return (buckets[:, None] * n + buckets[None, :]).flatten()


class TiledEncoderGraph(nn.Module):
    """pixels [P, 3, T, T] -> features [P, n, C], signal rows [P, heads, n] x 2, keys [P, n, C]."""

    def __init__(self, vision_tower: nn.Module, facts: TiledFacts) -> None:
        super().__init__()
        self.vision_tower = vision_tower
        self.facts = facts
        self.internvl = facts.tile_family == "internvl"
        if not self.internvl:
            embeddings = vision_tower.embeddings
            side = facts.tile_size // facts.patch_size
            ids = full_mask_position_ids(embeddings.num_patches_per_side, side)
            self.register_buffer("position_ids", ids, persistent=False)

    @property
    def signal(self) -> str:
        return self.facts.signal

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES_BY_SIGNAL[self.signal]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        plan = self.facts.layers
        hidden = self._embed(pixel_values)
        layers = self._layers()
        rows: dict[int, torch.Tensor] = {}
        keys = hidden
        for index, layer in enumerate(layers[: plan.layers_to_run]):
            if index in (plan.l_init, plan.l_final):
                queries, k = self._qk(layer, hidden)
                rows[index] = self._signal(queries, k)
                keys = k if index == plan.l_final else keys
            hidden = layer(hidden) if self.internvl else layer(hidden, None)
        if plan.layers_to_run == len(layers):
            hidden = self._final_norm(hidden)
        return self._patches(hidden), rows[plan.l_init], rows[plan.l_final], self._patches(keys)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        embeddings = self.vision_tower.embeddings
        if self.internvl:
            return embeddings(pixels)
        patches = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        return patches + embeddings.position_embedding(self.position_ids)[None]

    def _layers(self) -> nn.ModuleList:
        encoder = self.vision_tower.encoder
        return encoder.layer if self.internvl else encoder.layers

    def _qk(self, layer: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.internvl:
            attention, normed = layer.attention, layer.layernorm_before(hidden)
            return attention.q_norm(attention.q_proj(normed)), attention.k_norm(
                attention.k_proj(normed)
            )
        attention, normed = layer.self_attn, layer.layer_norm1(hidden)
        return attention.q_proj(normed), attention.k_proj(normed)

    def _signal(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if self.facts.signal == "cls":
            return cls_attention_rows(queries, keys, self.facts.num_heads)
        return received_attention_rows(queries, keys, self.facts.num_heads)

    def _final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        tower = self.vision_tower
        return tower.layernorm(hidden) if self.internvl else tower.post_layernorm(hidden)

    def _patches(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:] if self.internvl else tokens
