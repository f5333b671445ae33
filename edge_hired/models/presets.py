"""Shapes of the random-weight LLaVA checkpoints that `edge_hired.models.tiny` can build.

Presets are plain data: the keyword arguments of the vision (CLIP) and text (Llama) configs plus a
few top-level LLaVA settings. Nothing here allocates a model, so reading a preset is free; the
vocabulary size and special-token ids are filled in by the builder from the offline tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from edge_hired.hired.geometry import LLAVA_V16_PINPOINTS

Family = Literal["llava_next", "llava"]


@dataclass(frozen=True)
class ModelPreset:
    """One buildable checkpoint shape.

    `vision` and `text` are keyword arguments of `CLIPVisionConfig` and `LlamaConfig`;
    `dtype` is the dtype the weights are initialised and saved in.
    """

    name: str
    family: Family
    description: str
    vision: Mapping[str, Any]
    text: Mapping[str, Any]
    vision_feature_layer: int = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    image_grid_pinpoints: tuple[tuple[int, int], ...] = LLAVA_V16_PINPOINTS
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @property
    def image_size(self) -> int:
        """Side of the square the vision tower sees (336 for all presets)."""
        return int(self.vision["image_size"])

    @property
    def patch_size(self) -> int:
        """Side of one ViT patch in pixels."""
        return int(self.vision["patch_size"])

    @property
    def patches_per_image(self) -> int:
        """Patch tokens of one 336x336 partition, without the CLS token (576 for 336/14)."""
        return (self.image_size // self.patch_size) ** 2


def _frozen(**kwargs: Any) -> Mapping[str, Any]:
    """A read-only view of config kwargs, so a preset cannot be changed by accident."""
    return MappingProxyType(dict(kwargs))


_CLIP_336_GEOMETRY = {"image_size": 336, "patch_size": 14, "num_channels": 3}

TINY_CLIP = _frozen(
    **_CLIP_336_GEOMETRY,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    projection_dim=32,
)

VIT_L_14_336 = _frozen(
    **_CLIP_336_GEOMETRY,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    projection_dim=768,
)

TINY_LLAMA = _frozen(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)

LLAMA_1B = _frozen(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=16,
    num_attention_heads=16,
    num_key_value_heads=8,
    max_position_embeddings=4096,
)

PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            name="tiny-llava-next",
            family="llava_next",
            description="LLaVA-NeXT with real 336/14 geometry, 4-layer 32-wide CLIP, 2-layer Llama",
            vision=TINY_CLIP,
            text=TINY_LLAMA,
        ),
        ModelPreset(
            name="tiny-llava",
            family="llava",
            description="LLaVA-1.5 with real 336/14 geometry, 4-layer 32-wide CLIP, 2-layer Llama",
            vision=TINY_CLIP,
            text=TINY_LLAMA,
        ),
        ModelPreset(
            name="vitl-llava-next",
            family="llava_next",
            description="LLaVA-NeXT with a ViT-L/14-336-shaped encoder and the tiny Llama",
            vision=VIT_L_14_336,
            text=TINY_LLAMA,
        ),
        ModelPreset(
            name="mid-llava-next",
            family="llava_next",
            description="LLaVA-NeXT with a ViT-L/14-336 encoder and a ~0.75B Llama (~1.1B total)",
            vision=VIT_L_14_336,
            text=LLAMA_1B,
            dtype="bfloat16",
        ),
    )
}
