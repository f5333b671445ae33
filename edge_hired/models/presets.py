"""Shapes of the random-weight LLaVA checkpoints that `edge_hired.models.tiny` can build.

Presets are plain data: the keyword arguments of the vision (CLIP or SigLIP) and text (Llama or
Qwen2) configs plus a few top-level LLaVA settings. Nothing here allocates a model, so reading a
preset is free; the vocabulary size and special-token ids are filled in by the builder from the
offline tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from edge_hired.hired.geometry import LLAVA_V16_PINPOINTS

Family = Literal[
    "llava_next",
    "llava",
    "llava_onevision",
    "internvl",
    "smolvlm",
    "qwen3_vl",
    "qwen2_5_vl",
    "qwen3_5",
]

#: Native-resolution families (one partition, 2 x 2 merge units, 3-D M-RoPE).
QWEN_FAMILIES = ("qwen3_vl", "qwen2_5_vl", "qwen3_5")


@dataclass(frozen=True)
class ModelPreset:
    """One buildable checkpoint shape.

    `vision` and `text` are keyword arguments of the configs named by `vision_type` and
    `text_type`; `dtype` is the dtype the weights are initialised and saved in.
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
    vision_type: Literal[
        "clip_vision_model",
        "siglip_vision_model",
        "internvl_vision",
        "smolvlm_vision",
        "qwen3_vl_vision",
        "qwen2_5_vl_vision",
        "qwen3_5_vision",
    ] = "clip_vision_model"
    text_type: Literal["llama", "qwen2", "qwen3_vl_text", "qwen2_5_vl_text", "qwen3_5_text"] = (
        "llama"
    )
    merge: int = 1  # tiled families: patches per LLM-token side after the pixel shuffle

    @property
    def image_size(self) -> int:
        """Side of the square the vision tower sees (336 for CLIP, 384 for SigLIP presets)."""
        return int(self.vision["image_size"])

    @property
    def patch_size(self) -> int:
        """Side of one ViT patch in pixels."""
        return int(self.vision["patch_size"])

    @property
    def patches_per_image(self) -> int:
        """Patch tokens of one partition, without a CLS token (576 for 336/14, 729 for 384/14)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def has_cls(self) -> bool:
        """Whether the tower carries a CLS token (CLIP and InternViT do, SigLIP does not)."""
        return self.vision_type in ("clip_vision_model", "internvl_vision")

    @property
    def tokens_per_tile(self) -> int:
        """LLM tokens of one tile after the pixel shuffle (patches_per_image for LLaVA)."""
        return (self.image_size // self.patch_size // self.merge) ** 2


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

_SIGLIP_384_GEOMETRY = {"image_size": 384, "patch_size": 14, "num_channels": 3}

TINY_SIGLIP = _frozen(
    **_SIGLIP_384_GEOMETRY,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    vision_use_head=False,
)

#: SigLIP-so400m-patch14-384 as llava-hf's checkpoints ship it: 26 of its 27 layers (LLaVA drops
#: the last one), 1152 wide, 16 heads, 384 px / 14 = 27 x 27 = 729 tokens.
SIGLIP_SO400M_384 = _frozen(
    **_SIGLIP_384_GEOMETRY,
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=26,
    num_attention_heads=16,
    vision_use_head=False,
)

#: The SigLIP-so400m geometry and width with 8 layers: OneVision-shaped and CPU-sized.
SIGLIP_384_8L = _frozen(**{**SIGLIP_SO400M_384, "num_hidden_layers": 8})

#: llava-onevision's 36 pinpoints: every (h, w) of 1..6 tiles of 384 px per side.
ONEVISION_PINPOINTS: tuple[tuple[int, int], ...] = tuple(
    (384 * h, 384 * w) for h in range(1, 7) for w in range(1, 7)
)

#: InternViT with the real 448 / 14 geometry (32 x 32 patches + CLS), 4 layers, 32 wide.
TINY_INTERNVIT = _frozen(
    image_size=448,
    patch_size=14,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    attention_bias=True,
)

#: SmolVLM2-256M / 500M's SigLIP geometry (512 / 16 = 32 x 32 patches), 4 layers, 32 wide.
TINY_SMOLVLM_SIGLIP = _frozen(
    image_size=512,
    patch_size=16,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
)

#: InternViT-300M's width and 448 / 14 geometry (InternVL3-1B/2B, InternVL3.5) at 8 of its 24
#: layers: InternVL3-2B-shaped and CPU-sized (the LLM below keeps the same third of its depth).
INTERNVIT_300M_8L = _frozen(
    image_size=448,
    patch_size=14,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=8,
    num_attention_heads=16,
    attention_bias=True,
)

#: SmolVLM2-2.2B's SigLIP-so400m at 384 / 14 (27 x 27 patches, pixel shuffle 3 -> 81 tokens per
#: tile) at 9 of its 27 layers.
SMOLVLM_SIGLIP_384_9L = _frozen(
    image_size=384,
    patch_size=14,
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=9,
    num_attention_heads=16,
)

#: Qwen3-VL's vision tower geometry (patch 16, 2 x 2 merger, 48 x 48 learned positions) at 4
#: layers, 32 wide; DeepStack taps after blocks 1 and 2 feed the LLM's first two layers.
TINY_QWEN3_VL_VISION = _frozen(
    depth=4,
    hidden_size=32,
    intermediate_size=64,
    num_heads=4,
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=64,
    num_position_embeddings=2304,
    deepstack_visual_indexes=(1, 2),
)

#: Qwen2.5-VL's tower geometry (patch 14, 112 px attention windows) at 4 layers, 32 wide;
#: blocks 1 and 3 attend over the whole image (the last one is the signal's final layer).
TINY_QWEN2_5_VL_VISION = _frozen(
    depth=4,
    hidden_size=32,
    intermediate_size=64,
    num_heads=4,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=64,
    window_size=112,
    fullatt_block_indexes=(1, 3),
)

#: Qwen3.5's tower: Qwen3-VL's without DeepStack.
TINY_QWEN3_5_VISION = _frozen(
    **{k: v for k, v in TINY_QWEN3_VL_VISION.items() if k != "deepstack_visual_indexes"}
)

#: A 2-layer, 64-wide Qwen LLM with 3-D M-RoPE; head_dim 16, so the (t, h, w) rotary
#: sections [2, 3, 3] cover its 8 frequency pairs (the real models: [24, 20, 20] of 64).
TINY_QWEN_VL_TEXT = _frozen(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=16384,
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    },
)

#: Qwen2.5-VL's LLM shape at 2 layers (sequential M-RoPE sections, no head_dim override).
TINY_QWEN2_5_VL_TEXT = _frozen(
    **{k: v for k, v in TINY_QWEN_VL_TEXT.items() if k not in ("head_dim", "rope_parameters")},
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
)

#: Qwen3.5's hybrid LLM at 2 layers: one Gated-DeltaNet (linear attention) layer, then one full
#: attention layer with partial rotary (half of head_dim 32 = 16 dims, sections [2, 3, 3]).
TINY_QWEN3_5_TEXT = _frozen(
    **{k: v for k, v in TINY_QWEN_VL_TEXT.items() if k not in ("head_dim", "rope_parameters")},
    head_dim=32,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=16,
    linear_value_head_dim=16,
    layer_types=("linear_attention", "full_attention"),
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 10000000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
        "partial_rotary_factor": 0.5,
    },
)

#: Qwen3-VL-2B / 4B's vision tower (published config.json; patch 16, DeepStack after blocks
#: 5, 11, 17), and Qwen3-VL-2B's LLM (Qwen3-1.7B shape, tied embeddings, interleaved M-RoPE).
#: `reference_configs` builds the published models from these; `mid-qwen3-vl` uses them too.
QWEN3_VL_2B_VISION = _frozen(
    **{
        "depth": 24,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_heads": 16,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17],
        "hidden_act": "gelu_pytorch_tanh",
    }
)

QWEN3_VL_2B_TEXT = _frozen(
    **{
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 262144,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    }
)

TINY_QWEN2 = _frozen(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=16384,
)

#: Qwen2-0.5B (llava-interleave-qwen-0.5b, llava-onevision-qwen2-0.5b): 24 layers, 896 wide,
#: 14 heads, 2 KV heads, MLP 4864, tied embeddings.
QWEN2_0_5B = _frozen(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
)

#: Qwen2.5-1.5B's width (InternVL3-2B's LLM: 1536 wide, 12 heads, 2 KV heads, MLP 8960) at 10
#: of its 28 layers.
QWEN2_5_1_5B_10L = _frozen(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=10,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
)

#: SmolLM2-1.7B's width (SmolVLM2-2.2B's LLM: 2048 wide, 32 heads, MLP 8192) at 8 of its 24 layers.
SMOLLM2_1_7B_8L = _frozen(
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=8,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=8192,
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
        ModelPreset(
            name="tiny-llava-siglip",
            family="llava",
            description="LLaVA-1.5 with a SigLIP 384/14 tower (no CLS, 729 tokens, feature layer "
            "-1, strategy full) as llava-interleave, 4-layer 32-wide, 2-layer Qwen2",
            vision=TINY_SIGLIP,
            text=TINY_QWEN2,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="siglip_vision_model",
            text_type="qwen2",
        ),
        ModelPreset(
            name="tiny-llava-onevision",
            family="llava_onevision",
            description="LLaVA-OneVision (anyres_max_9, 36 pinpoints) with a 4-layer 32-wide "
            "SigLIP 384/14 and a 2-layer Qwen2",
            vision=TINY_SIGLIP,
            text=TINY_QWEN2,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            image_grid_pinpoints=ONEVISION_PINPOINTS,
            vision_type="siglip_vision_model",
            text_type="qwen2",
        ),
        ModelPreset(
            name="mid-llava-onevision",
            family="llava_onevision",
            description="LLaVA-OneVision with an 8-layer SigLIP-so400m-wide tower and Qwen2-0.5B",
            vision=SIGLIP_384_8L,
            text=QWEN2_0_5B,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            image_grid_pinpoints=ONEVISION_PINPOINTS,
            vision_type="siglip_vision_model",
            text_type="qwen2",
            dtype="bfloat16",
        ),
        ModelPreset(
            name="tiny-internvl",
            family="internvl",
            description="InternVL3-shaped: 448 px tiles + thumbnail, 4-layer 32-wide InternViT "
            "with CLS, pixel shuffle 0.5 (256 tokens per tile), 2-layer Qwen2",
            vision=TINY_INTERNVIT,
            text=TINY_QWEN2,
            vision_feature_layer=-1,
            vision_type="internvl_vision",
            text_type="qwen2",
            merge=2,
        ),
        ModelPreset(
            name="tiny-smolvlm",
            family="smolvlm",
            description="SmolVLM2-256M-shaped: 512 px tiles + global image, 4-layer 32-wide "
            "SigLIP 512/16, pixel shuffle 4 (64 tokens per tile), 2-layer Llama",
            vision=TINY_SMOLVLM_SIGLIP,
            text=TINY_LLAMA,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="smolvlm_vision",
            merge=4,
        ),
        ModelPreset(
            name="mid-internvl",
            family="internvl",
            description="InternVL3-2B-shaped at a third of its depth: InternViT-300M width "
            "(448/14, CLS, 16 heads) with 8 layers, pixel shuffle 0.5, Qwen2.5-1.5B width with "
            "10 layers, bf16",
            vision=INTERNVIT_300M_8L,
            text=QWEN2_5_1_5B_10L,
            vision_feature_layer=-1,
            vision_type="internvl_vision",
            text_type="qwen2",
            merge=2,
            dtype="bfloat16",
        ),
        ModelPreset(
            name="mid-smolvlm",
            family="smolvlm",
            description="SmolVLM2-2.2B-shaped at a third of its depth: SigLIP-so400m width "
            "(384/14) with 9 layers, pixel shuffle 3 (81 tokens per tile), SmolLM2-1.7B width "
            "with 8 layers, bf16",
            vision=SMOLVLM_SIGLIP_384_9L,
            text=SMOLLM2_1_7B_8L,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="smolvlm_vision",
            merge=3,
            dtype="bfloat16",
        ),
        ModelPreset(
            name="tiny-qwen3-vl",
            family="qwen3_vl",
            description="Qwen3-VL-shaped: native resolution, patch 16, 2 x 2 merge units, "
            "4-layer 32-wide tower with DeepStack taps [1, 2], 2-layer M-RoPE LLM",
            vision=TINY_QWEN3_VL_VISION,
            text=TINY_QWEN_VL_TEXT,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="qwen3_vl_vision",
            text_type="qwen3_vl_text",
            merge=2,
        ),
        ModelPreset(
            name="tiny-qwen2.5-vl",
            family="qwen2_5_vl",
            description="Qwen2.5-VL-shaped: native resolution, patch 14, 112 px windows with "
            "full attention in blocks [1, 3], 4-layer 32-wide tower, 2-layer M-RoPE LLM",
            vision=TINY_QWEN2_5_VL_VISION,
            text=TINY_QWEN2_5_VL_TEXT,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="qwen2_5_vl_vision",
            text_type="qwen2_5_vl_text",
            merge=2,
        ),
        ModelPreset(
            name="tiny-qwen3.5",
            family="qwen3_5",
            description="Qwen3.5-shaped: Qwen3-VL's tower without DeepStack, 2-layer hybrid "
            "LLM (Gated DeltaNet + full attention, partial M-RoPE)",
            vision=TINY_QWEN3_5_VISION,
            text=TINY_QWEN3_5_TEXT,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="qwen3_5_vision",
            text_type="qwen3_5_text",
            merge=2,
        ),
        ModelPreset(
            name="mid-qwen3-vl",
            family="qwen3_vl",
            description="Qwen3-VL-2B-shaped for benchmarks: 24-layer 1024-wide tower with "
            "DeepStack [5, 11, 17], 28-layer 2048-wide LLM (offline 1k vocabulary), bf16",
            vision=_frozen(**QWEN3_VL_2B_VISION, out_hidden_size=2048),
            text=QWEN3_VL_2B_TEXT,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_type="qwen3_vl_vision",
            text_type="qwen3_vl_text",
            merge=2,
            dtype="bfloat16",
        ),
    )
}
