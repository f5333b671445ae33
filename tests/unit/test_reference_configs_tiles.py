"""The published InternVL3/3.5 and SmolVLM2 shapes build the real model classes, at their size.

Models are built on the meta device (no memory); the parameter count must land in the band the
model card advertises, and the geometry facts (tokens per tile) must follow from the config.
"""

from __future__ import annotations

import pytest
import torch
from transformers import InternVLForConditionalGeneration, SmolVLMForConditionalGeneration

from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.models.reference_configs import TILED_PROCESSOR_SETTINGS, TILED_REFERENCE_MODELS

# hub id -> (low, high) parameter count in billions, and LLM tokens per tile.
EXPECTED = {
    "OpenGVLab/InternVL3-1B-hf": ((0.90, 1.00), 256),
    "OpenGVLab/InternVL3-2B-hf": ((2.00, 2.20), 256),
    "OpenGVLab/InternVL3_5-4B-HF": ((4.60, 4.80), 256),
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": ((0.250, 0.265), 64),
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": ((0.50, 0.52), 64),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": ((2.20, 2.30), 81),
}


def test_every_tiled_reference_model_is_listed() -> None:
    assert set(TILED_REFERENCE_MODELS) == set(EXPECTED)


@pytest.mark.parametrize("hub_id", sorted(EXPECTED))
def test_reference_config_builds_the_model_at_its_advertised_size(hub_id: str) -> None:
    builder, advertised = TILED_REFERENCE_MODELS[hub_id]
    config = builder()
    model_cls = (
        InternVLForConditionalGeneration
        if config.model_type == "internvl"
        else SmolVLMForConditionalGeneration
    )
    with torch.device("meta"):
        model = model_cls(config)
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    (low, high), tokens = EXPECTED[hub_id]
    assert low <= billions <= high, f"{hub_id}: {billions:.3f} B"
    assert low <= advertised <= high
    assert _tokens_per_tile(config) == tokens


def _tokens_per_tile(config) -> int:  # type: ignore[no-untyped-def]
    """(image / patch / merge)^2 from the config alone."""
    vision = config.vision_config
    if config.model_type == "internvl":
        side = vision.image_size[0] // vision.patch_size[0]
        merge = round(1 / config.downsample_ratio)
    else:
        side, merge = vision.image_size // vision.patch_size, config.scale_factor
    return (side // merge) ** 2


# Most LLM tokens one image can take: InternVL 12 tiles + thumbnail, SmolVLM 4 x 4 + global.
MAX_IMAGE_TOKENS = {
    "OpenGVLab/InternVL3-1B-hf": 13 * 256,
    "OpenGVLab/InternVL3-2B-hf": 13 * 256,
    "OpenGVLab/InternVL3_5-4B-HF": 13 * 256,
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": 17 * 64,
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": 17 * 64,
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": 17 * 81,
}


@pytest.mark.parametrize("hub_id", sorted(MAX_IMAGE_TOKENS))
def test_the_largest_image_takes_the_most_tokens_the_geometry_allows(hub_id: str) -> None:
    config, settings = TILED_REFERENCE_MODELS[hub_id][0](), TILED_PROCESSOR_SETTINGS[hub_id]
    vision = config.vision_config
    if config.model_type == "internvl":
        assert settings["tile_size"] == vision.image_size[0]
        shapes = [(1344, 1792), (448, 5376), (5376, 448), (1000, 1000), (10, 10)]
        sizes = [
            internvl_geometry(
                s,
                settings["tile_size"],
                vision.patch_size[0],
                0.5,
                settings["min_tiles"],
                settings["max_tiles"],
            ).num_tokens
            for s in shapes
        ]
    else:
        assert settings["tile_size"] == vision.image_size
        shapes = [(4000, 4000), (100, 4000), (4000, 100), (10, 10), (2000, 1000)]
        sizes = [
            smolvlm_geometry(
                s,
                settings["tile_size"],
                vision.patch_size,
                config.scale_factor,
                settings["longest_edge"],
            ).num_tokens
            for s in shapes
        ]
    assert sizes[0] == max(sizes) == MAX_IMAGE_TOKENS[hub_id]
