"""The vision towers of the tiled families with HiRED's signal: InternViT (CLS) and SigLIP.

The stock tower runs as the stock model runs it (all images in one batch, the stock order), so
its features are the stock features bit for bit. Forward hooks, alive only for the call, read
the queries and keys of the two layers HiRED looks at (after InternViT's optional q/k norm), and
the signal is computed from them in O(N) per head: the CLS row for InternViT
(`cls_attention_rows`), the attention each patch receives for SigLIP (`received_attention_rows`).
Everything is handed on in HiRED's partition order: the global view (stock: last) first.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_hired.runtime.cls_attention import cls_attention_rows
from edge_hired.runtime.received_attention import received_attention_rows
from edge_hired.runtime.tiled_facts import TiledFacts
from edge_hired.runtime.vision import VisionOutput, capture_outputs


def qk_modules(vision_tower: nn.Module, family: str) -> list[tuple[nn.Module, nn.Module]]:
    """Per layer, the modules whose outputs are the attention's queries and keys."""
    if family == "internvl":
        return [
            (layer.attention.q_norm, layer.attention.k_norm) for layer in vision_tower.encoder.layer
        ]
    return [
        (layer.self_attn.q_proj, layer.self_attn.k_proj) for layer in vision_tower.encoder.layers
    ]


def to_partitions(stock: torch.Tensor) -> torch.Tensor:
    """Images in the stock order (tiles, global view last) -> partition order (global first)."""
    return torch.roll(stock, shifts=1, dims=0)


class TiledVisionEncoder:
    """Stock tower -> [P, patches, C] features plus the signal rows [P, heads, patches]."""

    def __init__(self, vision_tower: nn.Module, facts: TiledFacts) -> None:
        self.tower = vision_tower
        self.facts = facts
        self.has_cls = facts.signal == "cls"
        self.qk = qk_modules(vision_tower, facts.tile_family)

    @property
    def provider(self) -> str:
        """What runs the encoder: PyTorch on its weights' device."""
        return f"torch:{self._weight().device.type}"

    def _weight(self) -> torch.Tensor:
        return next(self.tower.parameters())

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor) -> VisionOutput:
        """Encode [P, 3, H, W] pixel values given in the stock image order."""
        plan = self.facts.layers
        watched = sorted({plan.l_init, plan.l_final})
        weight = self._weight()
        pixels = pixel_values.to(device=weight.device, dtype=weight.dtype)
        with capture_outputs(self.qk, watched) as captured:
            hidden = self._features(pixels)
        rows = {i: self._signal(*captured[i]) for i in watched}
        keys = self._patches(captured[plan.l_final][1])
        return VisionOutput(
            to_partitions(self._patches(hidden)),
            to_partitions(rows[plan.l_init]),
            to_partitions(rows[plan.l_final]),
            to_partitions(keys),
            self.facts.signal,
        )

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The feature layer's hidden states, exactly as the stock `get_image_features` reads."""
        run, total = self.facts.layers.layers_to_run, len(self.qk)
        out = self.tower(pixel_values=pixels, output_hidden_states=run < total, return_dict=True)
        return out.last_hidden_state if run == total else out.hidden_states[run]

    def _signal(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        heads = self.facts.num_heads
        if self.has_cls:
            return cls_attention_rows(queries, keys, heads)
        return received_attention_rows(queries, keys, heads)

    def _patches(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:] if self.has_cls else tokens
