"""What a tiled family's bundle needs at load: facts, projector module, encoder in partition order.

The manifest records the tiling settings (tile, patch, merge, min / max tiles, longest edge), so
the runtime infers nothing from names. The ONNX encoder emits images in the stock order (tiles,
global view last); `PartitionOrderEncoder` hands them on global view first, as the in-process
encoder does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector

from edge_hired.runtime.tiled_encoder import to_partitions
from edge_hired.runtime.tiled_facts import TILED_FAMILIES, TILED_SIGNALS, TiledFacts
from edge_hired.runtime.vision import LayerPlan, VisionOutput


def is_tiled_family(family: str) -> bool:
    """Whether a manifest's family is a tiled one."""
    return family in TILED_FAMILIES


def tiled_facts_from_manifest(vision: Any) -> TiledFacts:
    """`TiledFacts` from a manifest's `VisionSpec`."""
    plan = LayerPlan(vision.layers_in_graph, vision.l_init, vision.l_final)
    return TiledFacts(
        family=vision.family,
        tile_size=vision.crop_size,
        patch_size=vision.patch_size,
        merge=vision.tile_merge,
        num_heads=vision.num_heads,
        layers=plan,
        image_token_id=vision.image_token_id,
        signal=TILED_SIGNALS[TILED_FAMILIES[vision.family]],
        min_tiles=vision.min_tiles,
        max_tiles=vision.max_tiles,
        longest_edge=vision.longest_edge,
    )


def tiled_projector(family: str, config: Any) -> nn.Module:
    """The module the bundle's projector weights load into: InternVL's MLP, SmolVLM's linear."""
    if TILED_FAMILIES[family] == "internvl":
        return InternVLMultiModalProjector(config)
    return SmolVLMConnector(config).modality_projection


class PartitionOrderEncoder:
    """An encoder emitting the stock image order, seen in HiRED's partition order."""

    def __init__(self, encoder: Callable[[torch.Tensor], VisionOutput]) -> None:
        self.encoder = encoder

    @property
    def provider(self) -> str | None:
        return getattr(self.encoder, "provider", None)

    def __call__(self, pixel_values: torch.Tensor) -> VisionOutput:
        out = self.encoder(pixel_values)
        return replace(
            out,
            features=to_partitions(out.features),
            cls_init=to_partitions(out.cls_init),
            cls_final=to_partitions(out.cls_final),
            keys_final=to_partitions(out.keys_final),
        )
