"""Published model shapes as configs only (no weights), for planning and tables.

The memory planner can size a real model from its configuration alone; this is the one place
that writes down the shape of llava-hf/llava-v1.6-vicuna-7b-hf for the profile table and tests.
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
