"""Planner facts of the SigLIP checkpoints from their published configs (meta device)."""

from __future__ import annotations

import pytest

from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.models.reference_configs import (
    llava_interleave_qwen_0_5b_config,
    llava_onevision_qwen2_0_5b_config,
)
from edge_hired.runtime.loading import model_facts


@pytest.mark.parametrize(
    "make, family, layout",
    [
        (llava_interleave_qwen_0_5b_config, "llava", (1, 729)),
        # 2304x2304: 36 tiles -> 162x162 tokens shrunk to 81x81, plus the 729 of the full image
        (llava_onevision_qwen2_0_5b_config, "llava_onevision", (37, 729 + 81 * 81)),
    ],
)
def test_siglip_configs_give_the_planner_their_layout(make, family, layout) -> None:
    config = make()
    facts = model_facts(config)
    assert (facts.family, facts.signal, facts.crop_size, facts.patch_size) == (
        family,
        "received",
        384,
        14,
    )
    assert (facts.layers.layers_to_run, facts.layers.l_final) == (26, 25)  # feature layer -1
    inputs = inputs_from_config(config, "none", "float16")
    assert inputs.vision.tokens_per_partition == 729  # no CLS token
    assert inputs.max_geometry() == layout
    # Qwen2-0.5B: 494M parameters (tied embeddings counted once) in fp16
    assert 0.90 < inputs.llm_weight_bytes / 2**30 < 0.94
    assert (inputs.llm.num_layers, inputs.llm.num_kv_heads, inputs.llm.head_dim) == (24, 2, 64)
