"""Published model shapes as configs only (no weights), for planning and tables.

The memory planner can size a real model from its configuration alone; this is the one place
that writes down the shapes of llava-hf/llava-v1.6-vicuna-7b-hf, llava-interleave-qwen-0.5b-hf and
llava-onevision-qwen2-0.5b-ov-hf for the tables and tests (from their published configs).
"""

from __future__ import annotations

from typing import Any

from edge_hired.hired.geometry import LLAVA_V16_PINPOINTS
from edge_hired.models.presets import VIT_L_14_336

VICUNA_7B_TEXT = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 11008,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
}


def llava_v16_vicuna_7b_config() -> Any:
    """llava-hf/llava-v1.6-vicuna-7b-hf's shape as a LlavaNextConfig (CLIP ViT-L/14-336)."""
    from transformers import LlavaNextConfig

    return LlavaNextConfig(
        vision_config={"model_type": "clip_vision_model", **VIT_L_14_336},
        text_config=dict(VICUNA_7B_TEXT),
        image_grid_pinpoints=[list(p) for p in LLAVA_V16_PINPOINTS],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_token_id=32000,
    )


def _siglip_qwen2_kwargs() -> dict[str, Any]:
    """The SigLIP-so400m-384 tower and Qwen2-0.5B text model the 0.5B llava-hf models share."""
    from edge_hired.models.presets import QWEN2_0_5B, SIGLIP_SO400M_384

    text = {**QWEN2_0_5B, "model_type": "qwen2", "vocab_size": 151936}
    return {
        "vision_config": {"model_type": "siglip_vision_model", **SIGLIP_SO400M_384},
        "text_config": text,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "image_token_id": 151646,
        "tie_word_embeddings": True,
    }


def llava_interleave_qwen_0_5b_config() -> Any:
    """llava-hf/llava-interleave-qwen-0.5b-hf's shape as a LlavaConfig (one 384 px partition)."""
    from transformers import LlavaConfig

    return LlavaConfig(**_siglip_qwen2_kwargs())


def llava_onevision_qwen2_0_5b_config() -> Any:
    """llava-hf/llava-onevision-qwen2-0.5b-ov-hf's shape (anyres_max_9, 36 pinpoints)."""
    from transformers import LlavaOnevisionConfig

    from edge_hired.models.presets import ONEVISION_PINPOINTS

    return LlavaOnevisionConfig(
        **_siglip_qwen2_kwargs(),
        image_grid_pinpoints=[list(p) for p in ONEVISION_PINPOINTS],
        vision_aspect_ratio="anyres_max_9",
    )
