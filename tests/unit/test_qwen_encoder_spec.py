"""`QwenEncoderSpec`: the tower facts and port names read from a vision config, bad ones refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edge_hired.errors import InvalidArgumentError
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec

QWEN3_VL = {
    "model_type": "qwen3_vl_vision",
    "depth": 4,
    "num_heads": 4,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [1, 2],
}
QWEN2_5_VL = {
    "model_type": "qwen2_5_vl_vision",
    "depth": 4,
    "num_heads": 4,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1, 3],
}


def test_qwen3_vl_reads_positions_and_deepstack() -> None:
    spec = QwenEncoderSpec.from_config(SimpleNamespace(**QWEN3_VL))
    assert (spec.family, spec.grid_side, spec.window_size, spec.signal_block) == (
        "qwen3_vl", 48, 0, 3)  # fmt: skip
    assert spec.input_names == ("pixel_values", "rotary_ids", "pos_index", "pos_weight")
    assert spec.output_names == ("features", "deepstack_0", "deepstack_1", "received_attn_final")


def test_qwen2_5_vl_is_windowed_and_reads_the_last_full_block() -> None:
    spec = QwenEncoderSpec.from_config(SimpleNamespace(**QWEN2_5_VL))
    assert (spec.family, spec.grid_side, spec.windowed, spec.signal_block) == (
        "qwen2_5_vl", 0, True, 3)  # fmt: skip
    assert spec.input_names == ("pixel_values", "rotary_ids", "window_index", "window_ids")
    assert spec.output_names == ("features", "received_attn_final")
    assert QwenEncoderSpec.from_config(SimpleNamespace(**QWEN2_5_VL), block=1).signal_block == 1


@pytest.mark.parametrize(
    ("config", "block", "message"),
    [
        ({**QWEN3_VL, "model_type": "siglip_vision_model"}, None, "vision model type"),
        (QWEN3_VL, 4, "signal block"),
        (QWEN2_5_VL, 2, "full-attention"),  # a windowed block has no whole-image signal
    ],
)
def test_bad_configs_and_blocks_are_one_line_errors(config: dict, block, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        QwenEncoderSpec.from_config(SimpleNamespace(**config), block)
