"""The stock Qwen3-VL / Qwen3.5 / Qwen2.5-VL vision tower as an export-ready module, any image size.

It calls the tower's own submodules one by one (patch embedding, learned positions, each block's
norms / fused qkv / the module's rotary function / attention / projection / MLP, the merger and
the DeepStack mergers) on one image, so nothing depends on the data: full attention is one
unmasked softmax, Qwen2.5-VL's windowed blocks mask by window id, and every index that the stock
tower derives from `grid_thw` with loops arrives as an input (`runtime.qwen_encoder_inputs`).
Attention runs in a fixed number of query chunks (`ATTENTION_QUERY_CHUNKS`, recorded in the
manifest): each chunk's scores against every key, the windowed blocks' mask for those query rows
only, softmax and probabilities @ values, so no [heads, N, N] map (nor an [N, N] mask) is ever
alive, only ceil(N / chunks) query rows of one: the full maps of a 1344 px image on a 16-head
tower are 3.2 GB, more than an 8 GB board has to spare. A fixed count (not a fixed row count)
keeps N symbolic in the exported graph. Every chunk has the same ceil(N / chunks) rows (rows past
the end repeat the last query and are dropped): ONNX Runtime's memory planner hands a freed
buffer on to a later tensor of the same symbolic shape, block after block, so chunks of 16
different shapes held 16 buffers for the whole run (measured: a whole map again). The signal
block's own fp32 probabilities give HiRED's signal (attention each patch receives, mean over the
queries), summed chunk by chunk over the real rows. Qwen2.5-VL's window order is undone in the
graph: features and signal leave in stock order.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec

#: Query chunks per attention: the live scores are heads x ceil(N / 16) x N, 1/16 of one map.
ATTENTION_QUERY_CHUNKS = 16


class QwenEncoderGraph(nn.Module):
    """patches + grid inputs -> merged features [U, D], DeepStack [U, D] each, signal [heads, N]."""

    def __init__(
        self, visual: nn.Module, spec: QwenEncoderSpec, chunks: int = ATTENTION_QUERY_CHUNKS
    ) -> None:
        super().__init__()
        self.visual = visual
        self.spec = spec
        self.chunks = chunks
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
        windows = None
        if self.spec.windowed:  # Qwen2.5-VL: window order, windowed blocks masked by window
            hidden, rope = self._window_order(hidden, rope, window_index)
            windows = window_ids
        hidden, deepstack, received = self._blocks(hidden, rope, windows)
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
        self, hidden: torch.Tensor, rope: tuple[torch.Tensor, ...], windows: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Every block in turn; DeepStack taps after their blocks; the signal at its block."""
        deepstack, received = [], hidden
        for index, block in enumerate(self.visual.blocks):
            windowed = windows if index not in self.full_blocks else None
            signal = index == self.spec.signal_block
            out, summed = self._attention(block.attn, block.norm1(hidden), rope, windowed, signal)
            hidden = hidden + out
            hidden = hidden + block.mlp(block.norm2(hidden))
            if index in self.deepstack:
                merger = self.visual.deepstack_merger_list[self.deepstack.index(index)]
                deepstack.append(merger(hidden))
            if signal:
                received = summed / hidden.shape[0]  # [heads, keys]: mean over the queries
        return hidden, deepstack, received

    def _attention(
        self,
        attn: nn.Module,
        normed: torch.Tensor,
        rope: tuple[torch.Tensor, ...],
        windows: torch.Tensor | None,
        signal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The block's attention as the stock module computes it, query chunk by query chunk,
        and (signal block) its fp32 probabilities summed over the queries: [heads, keys]."""
        tokens = normed.shape[0]
        qkv = self._qkv(attn, normed, rope)
        size = (tokens + self.chunks - 1) // self.chunks  # rows of every chunk: one shape
        offsets = torch.arange(size, device=normed.device)
        outs, summed = [], None
        for index in range(self.chunks):  # a symbolic size as range()'s step would bake it
            values, received = self._chunk(attn, qkv, index * size + offsets, windows, signal)
            outs.append(values)
            if received is not None:
                summed = received if summed is None else summed + received
        out = torch.cat(outs, dim=1).narrow(1, 0, tokens).transpose(0, 1).reshape(tokens, -1)
        return attn.proj(out), summed

    def _qkv(
        self, attn: nn.Module, normed: torch.Tensor, rope: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (rotated), keys (rotated) and values, each [heads, tokens, head_dim]."""
        tokens = normed.shape[0]
        qkv = attn.qkv(normed).reshape(tokens, 3, attn.num_heads, -1).permute(1, 0, 2, 3)
        q, k, v = qkv.unbind(0)
        q, k = self.rotary(q, k, *rope)
        return q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)

    def _chunk(
        self,
        attn: nn.Module,
        qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        rows: torch.Tensor,
        windows: torch.Tensor | None,
        signal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One chunk's values [heads, rows, head_dim] and (signal block) its probabilities summed
        over its real rows [heads, keys]; rows past the end repeat the last query."""
        q, k, v = qkv
        tokens = q.shape[1]
        picked = rows.clamp(max=tokens - 1)
        row_windows = None if windows is None else windows.index_select(0, picked)
        probs = self._probabilities(attn, q.index_select(1, picked), k, row_windows, windows)
        values = torch.matmul(probs.to(v.dtype), v)
        if not signal:
            return values, None
        real = (rows < tokens).to(probs.dtype)
        return _joined(values, torch.matmul(real, probs))

    @staticmethod
    def _probabilities(
        attn: nn.Module,
        query: torch.Tensor,
        keys: torch.Tensor,
        row_windows: torch.Tensor | None,
        windows: torch.Tensor | None,
    ) -> torch.Tensor:
        """fp32 softmax of some query rows against every key; a windowed block masks the
        keys outside each row's window (a [rows, N] mask, never [N, N])."""
        logits = torch.matmul(query, keys.transpose(1, 2)) * attn.scaling
        if row_windows is not None:
            logits = logits.masked_fill(row_windows[:, None] != windows[None, :], float("-inf"))
        return torch.softmax(logits, dim=-1, dtype=torch.float32)

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


def _joined(values: torch.Tensor, received: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk's values and its signal rows, unchanged, but made by one Concat node.

    ONNX Runtime orders the graph depth first from its outputs: were the values (towards the
    features) and the summed probabilities (towards the signal output) two separate paths, every
    chunk's probabilities would wait for the signal path, alive together: one whole map again.
    Joined, both are taken from the probabilities right after their softmax. The values pass
    through fp32 and back, which is exact.
    """
    flat = torch.cat([values.float().reshape(-1), received.reshape(-1)])
    head, tail = flat.split([values.numel(), received.numel()])
    return head.reshape(values.shape).to(values.dtype), tail.reshape(received.shape)
