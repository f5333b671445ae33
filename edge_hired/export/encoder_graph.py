"""The vision encoder as an export-ready module: features plus per-head CLS attention rows.

It calls the stock CLIP modules explicitly, layer by layer up to LLaVA's feature layer, and at
the two HiRED layers computes the CLS row from that layer's own q/k projections. No hooks and no
patches, so the traced graph contains exactly the layers that run and nothing after them.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_hired.runtime.cls_attention import cls_attention_rows
from edge_hired.runtime.vision import LayerPlan, clip_transformer

OUTPUT_NAMES = ("features", "cls_attn_init", "cls_attn_final", "keys_final")
INPUT_NAME = "pixel_values"


class EncoderGraph(nn.Module):
    """pixels [P, 3, H, W] -> features [P, N, D], CLS rows [P, heads, N] x 2, keys [P, N, D]."""

    def __init__(self, vision_tower: nn.Module, plan: LayerPlan) -> None:
        super().__init__()
        self.transformer = clip_transformer(vision_tower)
        self.plan = plan
        self.num_heads = self.transformer.config.num_attention_heads

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.transformer.pre_layrnorm(self.transformer.embeddings(pixel_values))
        rows: dict[int, torch.Tensor] = {}
        keys = hidden
        for index, layer in enumerate(self.transformer.encoder.layers[: self.plan.layers_to_run]):
            if index in (self.plan.l_init, self.plan.l_final):
                normed = layer.layer_norm1(hidden)
                k = layer.self_attn.k_proj(normed)
                rows[index] = cls_attention_rows(layer.self_attn.q_proj(normed), k, self.num_heads)
                if index == self.plan.l_final:
                    keys = k
            hidden = layer(hidden, None)
        return hidden[:, 1:], rows[self.plan.l_init], rows[self.plan.l_final], keys[:, 1:]
