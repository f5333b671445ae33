"""Published model shapes as configs only (no weights), for planning and tables.

The memory planner can size a real model from its configuration alone; this is the one place
that writes down the shapes of llava-hf/llava-v1.6-vicuna-7b-hf, llava-interleave-qwen-0.5b-hf and
llava-onevision-qwen2-0.5b-ov-hf for the tables and tests (from their published configs).
"""

from __future__ import annotations

import copy
from typing import Any

from edge_hired.hired.geometry import LLAVA_V16_PINPOINTS
from edge_hired.models.presets import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, VIT_L_14_336

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


# ---------------------------------------------------------------- InternVL3 / InternVL3.5 (-hf)
# Shapes from the published model cards and configs (OpenGVLab/InternVL3-1B-hf, -2B-hf,
# InternVL3_5-4B-HF; read through their hub pages and model cards, not downloaded here) and
# from the LLMs they are built on (Qwen2.5-0.5B / -1.5B, Qwen3-4B). Every -hf model uses
# InternViT-300M-448px-V2_5: 24 layers, 1024 wide, 16 heads, MLP 4096, qkv bias, LayerNorm,
# no QK-norm, 448 px tiles of 14 px patches plus a CLS token, pixel shuffle 0.5.
# Not checked against the files (no hub access): `vocab_size` (151674 for the InternVL3 -hf
# tokenizers, 151936 assumed for InternVL3.5), `image_token_id` of InternVL3.5 (151671 assumed)
# and untied LM heads (the advertised sizes, 0.9B / 2B / 4.7B, only add up with them untied).

INTERNVIT_300M_448 = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "image_size": [448, 448],
    "patch_size": [14, 14],
    "layer_scale_init_value": 0.1,
    "use_mean_pooling": True,
}

QWEN25_0_5B_TEXT = {  # InternVL3-1B's LLM (Qwen2.5-0.5B shape)
    "model_type": "qwen2",
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151674,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
}

QWEN25_1_5B_TEXT = {  # InternVL3-2B's LLM (Qwen2.5-1.5B shape)
    **QWEN25_0_5B_TEXT,
    "hidden_size": 1536,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "intermediate_size": 8960,
}

QWEN3_4B_TEXT = {  # InternVL3.5-4B's LLM (Qwen3-4B shape)
    "model_type": "qwen3",
    "hidden_size": 2560,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 9728,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
}


def _internvl_config(text: dict[str, Any], image_token_id: int) -> Any:
    """An InternVLConfig with the InternViT-300M tower and an untied LM head."""
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config={"model_type": "internvl_vision", **INTERNVIT_300M_448},
        text_config={**text, "tie_word_embeddings": False},
        downsample_ratio=0.5,
        image_seq_length=256,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


def internvl3_1b_config() -> Any:
    """OpenGVLab/InternVL3-1B-hf's shape (InternViT-300M + Qwen2.5-0.5B, ~0.94B)."""
    return _internvl_config(QWEN25_0_5B_TEXT, image_token_id=151667)


def internvl3_2b_config() -> Any:
    """OpenGVLab/InternVL3-2B-hf's shape (InternViT-300M + Qwen2.5-1.5B, ~2.1B)."""
    return _internvl_config(QWEN25_1_5B_TEXT, image_token_id=151667)


def internvl3_5_4b_config() -> Any:
    """OpenGVLab/InternVL3_5-4B-HF's shape (InternViT-300M + Qwen3-4B, ~4.7B)."""
    return _internvl_config(QWEN3_4B_TEXT, image_token_id=151671)


# ---------------------------------------------------------------- SmolVLM2
# From the published configs (HuggingFaceTB/SmolVLM2-256M-Video-Instruct, -500M-Video-Instruct,
# -2.2B-Instruct; their config.json excerpts and model cards): 256M / 500M use SigLIP-B/16 at
# 512 px (12 layers, 768 wide, 12 heads, MLP 3072) with pixel shuffle 4 (64 tokens per 512 px
# tile) and SmolLM2-135M / -360M; 2.2B uses SigLIP-so400m at 384 px with 14 px patches (27
# layers, 1152 wide, 16 heads, MLP 4304) with pixel shuffle 3 (81 tokens per tile) and
# SmolLM2-1.7B. image_token_id 49190, vocab 49280, untied LM heads (as their configs say).
# Processor knobs: size.longest_edge 4 x tile (2048 / 1536), max_image_size = the tile.

SIGLIP_B16_512 = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "image_size": 512,
    "patch_size": 16,
}

SIGLIP_SO400M_384_14 = {
    "hidden_size": 1152,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "intermediate_size": 4304,
    "image_size": 384,
    "patch_size": 14,
}

SMOLLM2_135M_TEXT = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "head_dim": 64,
    "vocab_size": 49280,
    "max_position_embeddings": 8192,
}

SMOLLM2_360M_TEXT = {
    **SMOLLM2_135M_TEXT,
    "hidden_size": 960,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
    "intermediate_size": 2560,
}

SMOLLM2_1_7B_TEXT = {
    **SMOLLM2_135M_TEXT,
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 8192,
}


def _smolvlm_config(vision: dict[str, Any], text: dict[str, Any], scale_factor: int) -> Any:
    """A SmolVLMConfig with an untied LM head."""
    from transformers import SmolVLMConfig

    return SmolVLMConfig(
        vision_config={"model_type": "smolvlm_vision", **vision},
        text_config={**text, "tie_word_embeddings": False},
        scale_factor=scale_factor,
        image_token_id=49190,
        tie_word_embeddings=False,
    )


def smolvlm2_256m_config() -> Any:
    """HuggingFaceTB/SmolVLM2-256M-Video-Instruct's shape (SigLIP-B/16-512 + SmolLM2-135M)."""
    return _smolvlm_config(SIGLIP_B16_512, SMOLLM2_135M_TEXT, scale_factor=4)


def smolvlm2_500m_config() -> Any:
    """HuggingFaceTB/SmolVLM2-500M-Video-Instruct's shape (SigLIP-B/16-512 + SmolLM2-360M)."""
    return _smolvlm_config(SIGLIP_B16_512, SMOLLM2_360M_TEXT, scale_factor=4)


def smolvlm2_2_2b_config() -> Any:
    """HuggingFaceTB/SmolVLM2-2.2B-Instruct's shape (SigLIP-so400m-384/14 + SmolLM2-1.7B)."""
    return _smolvlm_config(SIGLIP_SO400M_384_14, SMOLLM2_1_7B_TEXT, scale_factor=3)


#: The tiled reference models by hub id: config builder and the advertised size in billions.
TILED_REFERENCE_MODELS = {
    "OpenGVLab/InternVL3-1B-hf": (internvl3_1b_config, 0.9),
    "OpenGVLab/InternVL3-2B-hf": (internvl3_2b_config, 2.0),
    "OpenGVLab/InternVL3_5-4B-HF": (internvl3_5_4b_config, 4.7),
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": (smolvlm2_256m_config, 0.256),
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": (smolvlm2_500m_config, 0.5),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": (smolvlm2_2_2b_config, 2.2),
}


#: Image-processor settings of the tiled reference models, as their processors use them: tile
#: side in pixels and, for InternVL, `min_patches` / `max_patches` (`InternVLProcessor` turns
#: `crop_to_patches` on; the hub's preprocessor_config.json alone says false), for SmolVLM
#: `size.longest_edge` (4 tiles; 2048 for 256M / 500M, 1536 for 2.2B: from the SmolVLM docs and
#: the published preprocessor configs, not re-read here). Token knobs: max_patches, longest_edge.
TILED_PROCESSOR_SETTINGS: dict[str, dict[str, int]] = {
    "OpenGVLab/InternVL3-1B-hf": {"tile_size": 448, "min_tiles": 1, "max_tiles": 12},
    "OpenGVLab/InternVL3-2B-hf": {"tile_size": 448, "min_tiles": 1, "max_tiles": 12},
    "OpenGVLab/InternVL3_5-4B-HF": {"tile_size": 448, "min_tiles": 1, "max_tiles": 12},
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": {"tile_size": 512, "longest_edge": 2048},
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": {"tile_size": 512, "longest_edge": 2048},
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": {"tile_size": 384, "longest_edge": 1536},
}


# ---------------------------------------------------------------- Qwen3-VL / Qwen2.5-VL / Qwen3.5
# Native-resolution models (one partition of 2 x 2 merge units). Shapes as published in the
# checkpoints' config.json files (Qwen/Qwen3-VL-2B-Instruct, -4B-Instruct,
# Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen3.5-0.8B, -2B; nvidia/Cosmos-Reason2-2B is a Qwen3-VL-2B
# fine-tune with the same config), written from their model cards and configs as read before
# this session; no hub access here, so none was re-read. Least sure: the Qwen3.5 small models'
# linear-attention head counts and vision towers (0.8B: a 12-layer 768-wide tower assumed),
# and `vocab_size` / token ids of Qwen3.5 (248320 / 248056, the transformers defaults).
# The parameter-count test checks each against its advertised size.

QWEN3_VL_VISION_1024 = dict(QWEN3_VL_2B_VISION)  # Qwen3-VL-2B / 4B tower (presets.py)
QWEN3_1_7B_VL_TEXT = dict(QWEN3_VL_2B_TEXT)  # Qwen3-VL-2B's LLM (Qwen3-1.7B shape, presets.py)

QWEN3_4B_VL_TEXT = {  # Qwen3-VL-4B's LLM (Qwen3-4B shape, tied embeddings)
    **QWEN3_1_7B_VL_TEXT,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
}


def _qwen3_vl_config(text: dict[str, Any]) -> Any:
    """A Qwen3VLConfig with the 1024-wide tower projecting to the LLM's width."""
    from transformers import Qwen3VLConfig

    vision = {**copy.deepcopy(QWEN3_VL_VISION_1024), "out_hidden_size": text["hidden_size"]}
    return Qwen3VLConfig(
        vision_config=vision,
        text_config=copy.deepcopy(text),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=text["tie_word_embeddings"],
    )


def qwen3_vl_2b_config() -> Any:
    """Qwen/Qwen3-VL-2B-Instruct's shape (also nvidia/Cosmos-Reason2-2B's)."""
    return _qwen3_vl_config(QWEN3_1_7B_VL_TEXT)


def qwen3_vl_4b_config() -> Any:
    """Qwen/Qwen3-VL-4B-Instruct's shape."""
    return _qwen3_vl_config(QWEN3_4B_VL_TEXT)


def qwen2_5_vl_3b_config() -> Any:
    """Qwen/Qwen2.5-VL-3B-Instruct's shape: 32-block windowed tower, Qwen2.5-3B LLM."""
    from transformers import Qwen2_5_VLConfig

    vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "out_hidden_size": 2048,
        "hidden_act": "silu",
    }
    text = {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 128000,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
    }
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True)


QWEN3_5_TEXT_BASE = {  # shared by the small Qwen3.5 models: 3 linear-attention layers : 1 full
    "num_hidden_layers": 24,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "vocab_size": 248320,
    "max_position_embeddings": 262144,
    "tie_word_embeddings": True,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000000.0,
        "mrope_section": [11, 11, 10],
        "mrope_interleaved": True,
        "partial_rotary_factor": 0.25,
    },
}


def _qwen3_5_config(text: dict[str, Any], vision: dict[str, Any]) -> Any:
    """A Qwen3_5Config: the hybrid LLM and a Qwen3-VL-style tower without DeepStack."""
    from transformers import Qwen3_5Config

    tower = {
        "patch_size": 16,
        "num_position_embeddings": 2304,
        "out_hidden_size": text["hidden_size"],
        **vision,
    }
    return Qwen3_5Config(
        vision_config=tower, text_config={**QWEN3_5_TEXT_BASE, **text}, tie_word_embeddings=True
    )


def qwen3_5_0_8b_config() -> Any:
    """Qwen/Qwen3.5-0.8B's shape (1024-wide hybrid LLM, 12-layer 768-wide tower assumed)."""
    return _qwen3_5_config(
        {"hidden_size": 1024, "intermediate_size": 3584},
        {"depth": 12, "hidden_size": 768, "intermediate_size": 3072, "num_heads": 12},
    )


def qwen3_5_2b_config() -> Any:
    """Qwen/Qwen3.5-2B's shape (2048-wide hybrid LLM, the 24-layer 1024-wide tower)."""
    return _qwen3_5_config(
        {"hidden_size": 2048, "intermediate_size": 6144},
        {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16},
    )


#: The native-resolution reference models by hub id: config builder and advertised size (B).
QWEN_REFERENCE_MODELS = {
    "Qwen/Qwen3-VL-2B-Instruct": (qwen3_vl_2b_config, 2.0),
    "Qwen/Qwen3-VL-4B-Instruct": (qwen3_vl_4b_config, 4.0),
    "nvidia/Cosmos-Reason2-2B": (qwen3_vl_2b_config, 2.0),
    "Qwen/Qwen2.5-VL-3B-Instruct": (qwen2_5_vl_3b_config, 3.0),
    "Qwen/Qwen3.5-0.8B": (qwen3_5_0_8b_config, 0.8),
    "Qwen/Qwen3.5-2B": (qwen3_5_2b_config, 2.0),
}

#: Their image processors' pixel limits (preprocessor_config.json `size`) and patch size.
QWEN_PROCESSOR_SETTINGS: dict[str, dict[str, int]] = {
    "Qwen/Qwen3-VL-2B-Instruct": {"patch_size": 16, "min_pixels": 65536, "max_pixels": 16777216},
    "Qwen/Qwen3-VL-4B-Instruct": {"patch_size": 16, "min_pixels": 65536, "max_pixels": 16777216},
    "nvidia/Cosmos-Reason2-2B": {"patch_size": 16, "min_pixels": 65536, "max_pixels": 16777216},
    "Qwen/Qwen2.5-VL-3B-Instruct": {"patch_size": 14, "min_pixels": 3136, "max_pixels": 12845056},
    "Qwen/Qwen3.5-0.8B": {"patch_size": 16, "min_pixels": 65536, "max_pixels": 16777216},
    "Qwen/Qwen3.5-2B": {"patch_size": 16, "min_pixels": 65536, "max_pixels": 16777216},
}
