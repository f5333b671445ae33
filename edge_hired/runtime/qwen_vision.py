"""The stock Qwen3-VL / Qwen3.5 / Qwen2.5-VL vision tower, with HiRED's signal read on the way.

The tower runs as transformers wrote it (`get_image_features`): merged features for every merge
unit (the merger runs on all units, then the runtime gathers the kept ones: the merged features
and DeepStack features are gathered at the same tokens, so the result equals merging only the
kept units) and, for Qwen3-VL, the DeepStack features. A forward pre-hook on the *signal block*
(the last block; Qwen2.5-VL: the last full-attention block) reads its normed input and rotary
tables, rebuilds that block's q / k after the rotary embedding, and computes the attention each
patch receives in query chunks (`received_attention_rows`); Qwen2.5-VL's window order is undone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_hired.hired.native_geometry import NativeGeometry, unpermute_windows
from edge_hired.runtime.received_attention import received_attention_rows
from edge_hired.runtime.vision import VisionOutput


@dataclass(frozen=True)
class NativePixels:
    """What the Qwen image processor gives: flattened patches and the [1, 3] patch grid."""

    pixel_values: torch.Tensor  # [patches, C x T x p x p]
    grid_thw: torch.Tensor  # [1, 3] (1, patch rows, patch cols)
    geometry: NativeGeometry
    resize_budget: int | None = None  # the resize baseline's K (the image was shrunk to it)


@dataclass(frozen=True)
class NativeVisionOutput(VisionOutput):
    """Merged features [1, N, D] (raster order), the signal as [1, heads, N] rows, DeepStack."""

    deepstack: tuple[torch.Tensor, ...] = ()  # per DeepStack layer [N, D] (Qwen3-VL only)
    grid_thw: torch.Tensor | None = None  # [1, 3], for the M-RoPE positions
    resize_budget: int | None = None  # the resize baseline's K, else None

    @property
    def nbytes(self) -> int:
        """Bytes of its tensors, DeepStack features included."""
        extra = sum(t.numel() * t.element_size() for t in self.deepstack)
        return super().nbytes + extra


def signal_block(vision_config: object) -> int:
    """The block whose attention HiRED reads: the last one, or the last full-attention one."""
    full = getattr(vision_config, "fullatt_block_indexes", None)
    return int(max(full)) if full else int(vision_config.depth) - 1


class QwenVisionEncoder:
    """pixels -> merged (and DeepStack) features plus the signal block's attention received."""

    def __init__(self, model: nn.Module, block: int) -> None:
        self.model = model  # the ...ForConditionalGeneration (its `model.visual` is the tower)
        self.visual = model.model.visual
        self.block = block
        self.num_heads = int(self.visual.config.num_heads)
        self.window_size = getattr(self.visual.config, "window_size", None)
        self.windowed = bool(getattr(self.visual.config, "fullatt_block_indexes", None))

    @property
    def provider(self) -> str:
        """What runs the encoder: PyTorch on its weights' device."""
        return f"torch:{self.visual.patch_embed.proj.weight.device.type}"

    @torch.inference_mode()
    def __call__(self, pixels: NativePixels) -> NativeVisionOutput:
        """Encode one image's patches; the signal is summed per merge unit (`block_scores`)."""
        weight = self.visual.patch_embed.proj.weight
        values = pixels.pixel_values.to(device=weight.device, dtype=weight.dtype)
        grid = pixels.grid_thw.to(weight.device)
        with _capture_block(self.visual.blocks[self.block].attn) as captured:
            out = self.model.model.get_image_features(values, grid, return_dict=True)
        rows = self._patch_signal(captured, pixels.geometry)
        units = torch.from_numpy(pixels.geometry.block_scores(rows))
        features = out.pooler_output[0][None]
        deepstack = tuple(layer[0] for layer in getattr(out, "deepstack_features", None) or ())
        return NativeVisionOutput(
            features,
            units,
            units,
            features,
            "received",
            deepstack,
            pixels.grid_thw,
            pixels.resize_budget,
        )

    def _patch_signal(self, captured: dict, geometry: NativeGeometry) -> np.ndarray:
        """[1, heads, patches] attention received, in stock patch order, float32."""
        queries, keys = rotated_qk(captured["attn"], captured["hidden"], captured["rope"])
        rows = received_attention_rows(queries[None], keys[None], self.num_heads)
        signal = rows.cpu().numpy()
        if self.windowed:
            return unpermute_windows(geometry, signal, self.window_size)
        return signal


def rotated_qk(
    attn: nn.Module, hidden: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """[patches, heads x head_dim] q and k of a vision attention block after its 2-D rotary.

    The fused `qkv` is split as the block splits it and the rotary is applied with the block's
    own module function, so the q / k are the ones the block attends with.
    """
    tokens, heads = hidden.shape[0], attn.num_heads
    q, k, _ = attn.qkv(hidden).reshape(tokens, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
    apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb_vision
    q, k = apply_rotary(q, k, *rope)
    return q.reshape(tokens, -1), k.reshape(tokens, -1)


@contextmanager
def _capture_block(attn: nn.Module) -> Iterator[dict]:
    """Record the attention module, its input hidden states and rotary tables for one call."""
    captured: dict = {"attn": attn}

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        captured["rope"] = kwargs["position_embeddings"]

    handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()
