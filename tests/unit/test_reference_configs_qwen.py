"""The published Qwen3-VL / Cosmos-Reason2 / Qwen2.5-VL / Qwen3.5 shapes build the real classes.

Models are built on the meta device (no memory); the parameter count must land in the band of
the advertised size, and the token facts the issue quotes must follow from config + processor.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from edge_hired.hired.native_geometry import native_geometry
from edge_hired.models.reference_configs import QWEN_PROCESSOR_SETTINGS, QWEN_REFERENCE_MODELS

CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
}
# hub id -> (low, high) parameter count in billions
EXPECTED = {
    "Qwen/Qwen3-VL-2B-Instruct": (2.0, 2.2),
    "Qwen/Qwen3-VL-4B-Instruct": (4.3, 4.5),
    "nvidia/Cosmos-Reason2-2B": (2.0, 2.2),
    "Qwen/Qwen2.5-VL-3B-Instruct": (3.7, 3.8),
    "Qwen/Qwen3.5-0.8B": (0.8, 0.9),
    "Qwen/Qwen3.5-2B": (2.0, 2.3),
}


def test_every_qwen_reference_model_is_listed() -> None:
    assert set(QWEN_REFERENCE_MODELS) == set(EXPECTED) == set(QWEN_PROCESSOR_SETTINGS)


@pytest.mark.parametrize("hub_id", sorted(EXPECTED))
def test_reference_config_builds_the_model_at_its_advertised_size(hub_id: str) -> None:
    builder, advertised = QWEN_REFERENCE_MODELS[hub_id]
    config = builder()
    with torch.device("meta"):
        model = getattr(transformers, CLASSES[config.model_type])(config)
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    low, high = EXPECTED[hub_id]
    assert low <= billions <= high, f"{hub_id}: {billions:.3f} B"
    assert advertised <= high
    vision = config.vision_config
    assert vision.out_hidden_size == config.text_config.hidden_size
    assert vision.patch_size == QWEN_PROCESSOR_SETTINGS[hub_id]["patch_size"]


def test_the_structure_the_issue_relies_on() -> None:
    qwen3 = QWEN_REFERENCE_MODELS["Qwen/Qwen3-VL-2B-Instruct"][0]()
    assert list(qwen3.vision_config.deepstack_visual_indexes) == [5, 11, 17]
    qwen25 = QWEN_REFERENCE_MODELS["Qwen/Qwen2.5-VL-3B-Instruct"][0]()
    assert list(qwen25.vision_config.fullatt_block_indexes) == [7, 15, 23, 31]
    assert qwen25.vision_config.depth - 1 == 31  # the last full-attention block is the last one


@pytest.mark.parametrize(
    ("hub_id", "tokens_1344", "most_patches"),
    [
        ("Qwen/Qwen3-VL-2B-Instruct", 1764, 65536),
        ("Qwen/Qwen2.5-VL-3B-Instruct", 2304, 65536),
        ("Qwen/Qwen3.5-2B", 1764, 65536),
    ],
)
def test_token_counts_follow_from_the_processor_settings(
    hub_id: str, tokens_1344: int, most_patches: int
) -> None:
    settings = QWEN_PROCESSOR_SETTINGS[hub_id]
    knobs = settings["patch_size"], 2, settings["min_pixels"], settings["max_pixels"]
    assert native_geometry((1344, 1344), *knobs).num_tokens == tokens_1344
    assert native_geometry((8000, 8000), *knobs).num_patches == most_patches
