"""The stock Qwen3-VL / Qwen3.5 / Qwen2.5-VL vision tower as an export-ready module, any image size.

It calls the tower's own submodules one by one (patch embedding, learned positions, each block's
norms / fused qkv / the module's rotary function / attention / projection / MLP, the merger and
the DeepStack mergers) on one image, so nothing depends on the data: full attention is one
unmasked softmax, Qwen2.5-VL's windowed blocks mask by window id, and every index that the stock
tower derives from `grid_thw` with loops arrives as an input (`runtime.qwen_encoder_inputs`).
The signal block's own softmax probabilities give HiRED's signal (attention each patch receives,
mean over queries): one N x N map per head, the one the block needs anyway, so the graph keeps
dynamic shapes (a query-chunk loop would unroll at the export probe's N). Qwen2.5-VL's window
order is undone in the graph: features and signal leave in stock order.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec


class QwenEncoderGraph(nn.Module):
    """patches + grid inputs -> merged features [U, D], DeepStack [U, D] each, signal [heads, N]."""

    def __init__(self, visual: nn.Module, spec: QwenEncoderSpec) -> None:
        super().__init__()
        self.visual = visual
        self.spec = spec
        self.unit = spec.merge**2
        config = visual.config
        self.full_blocks = set(getattr(config, "fullatt_block_indexes", None) or ())
        self.deepstack = list(getattr(config, "deepstack_visual_indexes", None) or ())
        self.rotary = sys.modules[
            type(visual.blocks[0].attn).__module__
        ].apply_rotary_pos_emb_vision

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.spec.output_names

    def forward(
        self,
        pixel_values: torch.Tensor,
        rotary_ids: torch.Tensor,
        pos_index: torch.Tensor | None = None,
        pos_weight: torch.Tensor | None = None,
        window_index: torch.Tensor | None = None,
        window_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        hidden = self._embed(pixel_values, pos_index, pos_weight)
        rope = self.visual.rotary_pos_emb(hidden, rotary_ids)
        mask = None
        if self.spec.windowed:  # Qwen2.5-VL: window order, windowed blocks masked by window
            hidden, rope = self._window_order(hidden, rope, window_index)
            mask = window_ids[:, None] == window_ids[None, :]
        hidden, deepstack, received = self._blocks(hidden, rope, mask)
        features = self.visual.merger(hidden)
        if self.spec.windowed:
            features, received = self._stock_order(features, received, window_index)
        return (features, *deepstack, received)

    def _embed(
        self, pixels: torch.Tensor, index: torch.Tensor | None, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """Patch embedding; Qwen3-VL / Qwen3.5 add the learned positions' bilinear taps."""
        hidden = self.visual.patch_embed(pixels)
        if self.spec.windowed:  # Qwen2.5-VL has no learned positions
            return hidden
        positions = (self.visual.pos_embed(index) * weight[:, :, None]).sum(0)
        return hidden + positions.to(hidden.dtype)

    def _blocks(
        self, hidden: torch.Tensor, rope: tuple[torch.Tensor, ...], mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Every block in turn; DeepStack taps after their blocks; the signal at its block."""
        deepstack, received = [], hidden
        for index, block in enumerate(self.visual.blocks):
            windowed = mask if mask is not None and index not in self.full_blocks else None
            out, probs = self._attention(block.attn, block.norm1(hidden), rope, windowed)
            hidden = hidden + out
            hidden = hidden + block.mlp(block.norm2(hidden))
            if index in self.deepstack:
                merger = self.visual.deepstack_merger_list[self.deepstack.index(index)]
                deepstack.append(merger(hidden))
            if index == self.spec.signal_block:
                received = probs.mean(dim=1)  # [heads, keys]: mean over the queries
        return hidden, deepstack, received

    def _attention(
        self,
        attn: nn.Module,
        normed: torch.Tensor,
        rope: tuple[torch.Tensor, ...],
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's attention as the stock module computes it, and its fp32 probabilities."""
        tokens = normed.shape[0]
        qkv = attn.qkv(normed).reshape(tokens, 3, attn.num_heads, -1).permute(1, 0, 2, 3)
        q, k, v = qkv.unbind(0)
        q, k = self.rotary(q, k, *rope)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, tokens, head_dim]
        logits = torch.matmul(q, k.transpose(1, 2)) * attn.scaling
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        out = torch.matmul(probs.to(v.dtype), v).transpose(0, 1).reshape(tokens, -1)
        return attn.proj(out), probs

    def _window_order(
        self, hidden: torch.Tensor, rope: tuple[torch.Tensor, ...], order: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Hidden states and rotary tables permuted into window order, merge unit by unit."""
        permute = self.visual.permute_input_for_window_attn
        tokens = hidden.shape[0]
        return permute(hidden, order, tokens), tuple(permute(t, order, tokens) for t in rope)

    def _stock_order(
        self, features: torch.Tensor, received: torch.Tensor, order: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Undo the window order as the stock tower does (argsort), and likewise the signal."""
        reverse = torch.argsort(order)
        heads = received.shape[0]
        units = received.reshape(heads, -1, self.unit)[:, reverse]
        return features[reverse], units.reshape(heads, -1)
