"""Plan facts of the Qwen-VL families from their configs alone (meta device, no weights)."""

from __future__ import annotations

import pytest

from edge_hired.facts.config_inputs import PLAN_MAX_PIXELS, inputs_from_config
from edge_hired.hired.native_geometry import native_geometry
from edge_hired.models import reference_configs as ref
from edge_hired.planner.shapes import image_geometry


@pytest.mark.parametrize(
    ("make", "tokens", "kv_layers"),
    [
        (ref.qwen3_vl_2b_config, 1764, 28),  # 1344 / 32 = 42 units a side
        (ref.qwen2_5_vl_3b_config, 2304, 36),  # 1344 / 28 = 48 units a side
        (ref.qwen3_5_0_8b_config, 1764, None),  # only the full-attention layers hold KV
    ],
)
def test_native_facts_from_the_config(make, tokens: int, kv_layers: int | None) -> None:
    config = make()
    inputs = inputs_from_config(config, "4bit", "float16")
    assert inputs.max_geometry() == (1, tokens)
    assert inputs.vision.tokens_per_partition == 4 * tokens  # patches the encoder sees
    assert inputs.vision.layers_run == config.vision_config.depth
    kinds = getattr(config.text_config, "layer_types", None)
    expected = kv_layers or sum(kind == "full_attention" for kind in kinds)
    assert inputs.llm.num_layers == expected
    if kv_layers is None:
        assert expected < config.text_config.num_hidden_layers
    assert inputs.kv_bytes_per_token == 2 * expected * inputs.llm.num_kv_heads * (
        inputs.llm.head_dim * 2
    )


def test_planned_geometry_is_the_processor_s() -> None:
    inputs = inputs_from_config(ref.qwen3_vl_2b_config(), "none", "float16")
    for hw in [(1344, 1344), (720, 1280), (2000, 500)]:
        mine = image_geometry(inputs.vision, hw)
        stock = native_geometry(hw, 16, 2, inputs.vision.min_pixels, PLAN_MAX_PIXELS)
        assert mine.num_tokens == stock.num_tokens <= inputs.max_geometry()[1]
