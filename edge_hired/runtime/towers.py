"""The two ViT towers LLaVA models use, seen through one shape: embed, (pre-norm), layers.

CLIP carries a CLS token and a pre-layernorm; HiRED's signal there is the CLS row. SigLIP has
neither, so its signal is the attention each patch receives (HIRED.md). This module names which
signal a tower gives and computes it from one layer's queries and keys, so the in-process
encoder and the export graph share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_hired.errors import ModelLoadError, expected
from edge_hired.runtime.cls_attention import cls_attention_rows
from edge_hired.runtime.received_attention import received_attention_rows

SIGNALS = {"clip_vision_model": "cls", "siglip_vision_model": "received"}
"""The HiRED signal of each supported tower type (the vision config's model_type)."""


@dataclass(frozen=True)
class Tower:
    """The modules of a vision tower that HiRED's encoder calls, and what they carry."""

    embeddings: nn.Module
    pre_norm: nn.Module | None  # CLIP's pre_layrnorm; SigLIP has none
    layers: nn.ModuleList
    num_heads: int
    has_cls: bool

    @property
    def signal(self) -> str:
        """ "cls" (CLIP's CLS row) or "received" (attention received, SigLIP)."""
        return "cls" if self.has_cls else "received"

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch (+ CLS) embeddings with positions, through the pre-norm if the tower has one."""
        hidden = self.embeddings(pixels)
        return hidden if self.pre_norm is None else self.pre_norm(hidden)

    def signal_rows(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """[P, heads, N] float32 signal of one layer from its q / k projections."""
        if self.has_cls:
            return cls_attention_rows(queries, keys, self.num_heads)
        return received_attention_rows(queries, keys, self.num_heads)

    def patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """[P, N, ...]: the patch tokens of a [P, (1 +) N, ...] sequence (CLS dropped)."""
        return tokens[:, 1:] if self.has_cls else tokens


def tower_of(vision_tower: nn.Module) -> Tower:
    """The Tower view of a CLIPVisionModel or SiglipVisionModel, or a clear refusal."""
    inner = getattr(vision_tower, "vision_model", vision_tower)
    kind = getattr(getattr(inner, "config", None), "model_type", type(vision_tower).__name__)
    if kind not in SIGNALS or not all(hasattr(inner, a) for a in ("embeddings", "encoder")):
        raise ModelLoadError(expected("vision tower", " or ".join(SIGNALS), kind))
    has_cls = SIGNALS[kind] == "cls"
    return Tower(
        embeddings=inner.embeddings,
        pre_norm=inner.pre_layrnorm if has_cls else None,
        layers=inner.encoder.layers,
        num_heads=inner.config.num_attention_heads,
        has_cls=has_cls,
    )
