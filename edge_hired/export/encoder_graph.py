"""The vision encoder as an export-ready module: features plus the per-head attention signal.

It calls the stock CLIP / SigLIP modules explicitly, layer by layer up to LLaVA's feature layer,
and at the two HiRED layers computes the signal (CLS rows, or attention received for SigLIP)
from that layer's own q/k projections. No hooks and no patches, so the traced graph contains
exactly the layers that run and nothing after them. Output names say which signal it carries.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_hired.runtime.towers import tower_of
from edge_hired.runtime.vision import LayerPlan

OUTPUT_NAMES_BY_SIGNAL = {
    "cls": ("features", "cls_attn_init", "cls_attn_final", "keys_final"),
    "received": ("features", "received_attn_init", "received_attn_final", "keys_final"),
}
INPUT_NAME = "pixel_values"


class EncoderGraph(nn.Module):
    """pixels [P, 3, H, W] -> features [P, N, D], signal [P, heads, N] x 2, keys [P, N, D]."""

    def __init__(self, vision_tower: nn.Module, plan: LayerPlan) -> None:
        super().__init__()
        self.vision_tower = vision_tower
        self.tower = tower_of(vision_tower)
        self.plan = plan
        self.num_heads = self.tower.num_heads

    @property
    def signal(self) -> str:
        """ "cls" or "received"."""
        return self.tower.signal

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph's output names, named for its signal."""
        return OUTPUT_NAMES_BY_SIGNAL[self.signal]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tower = self.tower
        hidden = tower.embed(pixel_values)
        rows: dict[int, torch.Tensor] = {}
        keys = hidden
        for index, layer in enumerate(tower.layers[: self.plan.layers_to_run]):
            if index in (self.plan.l_init, self.plan.l_final):
                normed = layer.layer_norm1(hidden)
                k = layer.self_attn.k_proj(normed)
                rows[index] = tower.signal_rows(layer.self_attn.q_proj(normed), k)
                if index == self.plan.l_final:
                    keys = k
            hidden = layer(hidden, None)
        init, final = rows[self.plan.l_init], rows[self.plan.l_final]
        return tower.patches(hidden), init, final, tower.patches(keys)
