"""Plan facts of the Qwen-VL families from their configs alone (meta device, no weights)."""

from __future__ import annotations

import pytest

from edge_hired.facts.config_inputs import PLAN_MAX_PIXELS, inputs_from_config
from edge_hired.hired.native_geometry import native_geometry
from edge_hired.models import reference_configs as ref
from edge_hired.planner.arithmetic import predict_lines
from edge_hired.planner.costs import CostKind
from edge_hired.planner.inputs import PlanRequest
from edge_hired.planner.shapes import image_geometry
from edge_hired.profiles import load_profile
from edge_hired.serve.admission import text_cost


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


def test_the_linear_attention_state_is_a_fixed_cost_per_request() -> None:
    inputs = inputs_from_config(ref.qwen3_5_0_8b_config(), "none", "float16")
    # 18 linear layers (3 of every 4) x (conv: (2 x 16 x 128 + 16 x 128) channels x kernel 4
    # x 2 B float16 + recurrent: 16 value heads x 128 x 128 x 4 B float32)
    assert inputs.llm.linear_state_bytes == 18 * (6144 * 4 * 2 + 16 * 128 * 128 * 4) == 19_759_104
    profile, request = load_profile("orin-nano-8gb"), PlanRequest(64, 64)
    per_token = inputs.kv_bytes_per_token * (1 + 1 / inputs.llm.num_layers)
    for visual in (100, 1000):
        lines = {line.name: line for line in predict_lines(inputs, profile, request, visual)}
        state = lines["linear-attention state"]
        assert (state.bytes, state.kind) == (19_759_104, CostKind.KV_CACHE)
        assert lines["KV cache"].bytes == int(per_token * (visual + 64 + 64))  # tokens only
    assert text_cost(inputs, 10, 5).kv_bytes == inputs.kv_bytes_per_token * 15 + 19_759_104


def test_a_model_without_linear_attention_has_no_state_line() -> None:
    inputs = inputs_from_config(ref.qwen3_vl_2b_config(), "none", "float16")
    lines = predict_lines(inputs, load_profile("orin-nano-8gb"), PlanRequest(64, 64), 100)
    assert inputs.llm.linear_state_bytes == 0
    assert "linear-attention state" not in {line.name for line in lines}
    assert text_cost(inputs, 10, 5).kv_bytes == inputs.kv_bytes_per_token * 15
