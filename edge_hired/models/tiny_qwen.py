"""The Qwen-VL parts of the offline checkpoints: markers, chat template, config and processor.

`edge_hired.models.tiny` builds every preset; for the native-resolution families (Qwen3-VL,
Qwen2.5-VL, Qwen3.5) it takes from here what differs from LLaVA: the Qwen vision markers as
special tokens, a Qwen chat template (`<|vision_start|><|image_pad|><|vision_end|>` per image),
the config kwargs of `Qwen3VLConfig` / `Qwen2_5_VLConfig` / `Qwen3_5Config`, and the PIL image
processor (`Qwen2VLImageProcessorPil`, which needs no torchvision) with the hub's settings.
"""

from __future__ import annotations

import copy
from typing import Any

from edge_hired.models.presets import ModelPreset

#: Qwen's vision markers and turn markers, as the Qwen tokenizers name them.
QWEN_VISION_TOKENS = {
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
}
QWEN_TURN_TOKENS = ("<|im_start|>", "<|im_end|>")

#: Qwen style: each image is `<|vision_start|><|image_pad|><|vision_end|>` in content order.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)

CONFIG_CLASSES = {
    "qwen3_vl": "Qwen3VLConfig",
    "qwen2_5_vl": "Qwen2_5_VLConfig",
    "qwen3_5": "Qwen3_5Config",
}

#: Image-processor settings of the hub checkpoints (their preprocessor_config.json, as published;
#: not re-read here): pixel limits and normalisation. Qwen3-VL / Qwen3.5: 256^2..4096^2 pixels,
#: mean = std = 0.5; Qwen2.5-VL: 56^2..28^2 x 16384 pixels, the OpenAI CLIP mean and std.
PROCESSOR_SETTINGS: dict[str, dict[str, Any]] = {
    "qwen3_vl": {
        "size": {"shortest_edge": 65536, "longest_edge": 16777216},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    },
    "qwen2_5_vl": {"size": {"shortest_edge": 3136, "longest_edge": 12845056}},
}
PROCESSOR_SETTINGS["qwen3_5"] = PROCESSOR_SETTINGS["qwen3_vl"]


def special_tokens() -> tuple[str, ...]:
    """The Qwen markers to add to the offline tokenizer as single special tokens."""
    return (*QWEN_VISION_TOKENS.values(), *QWEN_TURN_TOKENS)


def qwen_tokenizer(bpe: Any, bos: str, eos: str, unk: str, pad: str) -> Any:
    """The offline tokenizer (`bpe`, trained with the Qwen markers) with a Qwen chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        pad_token=pad,
        extra_special_tokens=dict(QWEN_VISION_TOKENS),
        padding_side="left",
        model_max_length=16384,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def _plain(value: Any) -> Any:
    """A deep copy with tuples as lists, as the configs' strict fields and JSON want them."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def qwen_config_kwargs(spec: ModelPreset, text: dict[str, Any], ids: dict[str, int]) -> dict:
    """Config kwargs for a Qwen preset: tower, LLM (`text` from the tokenizer) and marker ids."""
    return {
        "vision_config": {"model_type": spec.vision_type, **_plain(spec.vision)},
        "text_config": {**_plain(text), "model_type": spec.text_type},
        "image_token_id": ids["image_token"],
        "video_token_id": ids["video_token"],
        "vision_start_token_id": ids["vision_start_token"],
        "vision_end_token_id": ids["vision_end_token"],
        "dtype": spec.dtype,
    }


def qwen_image_processor(spec: ModelPreset) -> Any:
    """`Qwen2VLImageProcessorPil` with the preset's patch and merge and the hub's settings."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=spec.merge,
        temporal_patch_size=int(spec.vision["temporal_patch_size"]),
        **copy.deepcopy(PROCESSOR_SETTINGS[spec.family]),
    )
