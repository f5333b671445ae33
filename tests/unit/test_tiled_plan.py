"""`plan` facts of the tiled reference models (InternVL3/3.5, SmolVLM2) from their configs alone.

The planner's image geometry for these families is the runtime's (`hired.tiles`): an InternVL
image is at most 12 tiles + a thumbnail of 256 tokens (13 x 256 = 3328), SmolVLM2 at most 4 x 4
tiles + the global image (17 x 64 = 1088; 2.2B: 17 x 81 = 1377); a 1344 px square InternVL image
is 3 x 3 tiles + thumbnail = 2560 tokens (issue 18's figure).
"""

from __future__ import annotations

import pytest

from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.facts.memory_cap import memory_cap
from edge_hired.models import reference_configs as ref
from edge_hired.planner.arithmetic import PlanError, plan_budget
from edge_hired.planner.inputs import PlanRequest
from edge_hired.planner.shapes import image_geometry
from edge_hired.profiles import load_profile
from edge_hired.runtime.loading import model_facts
from edge_hired.runtime.tiled_facts import TiledFacts

# hub id -> (tile, patch, merge, signal, encoder tokens per tile, (partitions, LLM tokens) max)
EXPECTED = {
    "OpenGVLab/InternVL3-1B-hf": (448, 14, 2, "cls", 1025, (13, 3328)),
    "OpenGVLab/InternVL3-2B-hf": (448, 14, 2, "cls", 1025, (13, 3328)),
    "OpenGVLab/InternVL3_5-4B-HF": (448, 14, 2, "cls", 1025, (13, 3328)),
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": (512, 16, 4, "received", 1024, (17, 1088)),
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": (512, 16, 4, "received", 1024, (17, 1088)),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": (384, 14, 3, "received", 729, (17, 1377)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_facts_and_largest_layout_from_the_config(name: str) -> None:
    tile, patch, merge, signal, encoder_tokens, largest = EXPECTED[name]
    config = ref.TILED_REFERENCE_MODELS[name][0]()
    facts = model_facts(config)
    assert isinstance(facts, TiledFacts)
    assert (facts.crop_size, facts.patch_size, facts.merge, facts.signal) == (
        tile,
        patch,
        merge,
        signal,
    )
    settings = ref.TILED_PROCESSOR_SETTINGS[name]  # the defaults are the reference processors'
    assert facts.tile_size == settings["tile_size"]
    assert facts.max_tiles == settings.get("max_tiles", facts.max_tiles)
    inputs = inputs_from_config(config, "4bit", "float16")
    assert inputs.vision.tokens_per_partition == encoder_tokens
    assert inputs.max_geometry() == largest


def test_planner_geometry_is_the_runtimes() -> None:
    inputs = inputs_from_config(ref.internvl3_1b_config(), "none", "float16")
    square = image_geometry(inputs.vision, (1344, 1344))
    assert (square.grid, square.num_tokens) == ((3, 3), 2560)
    wide = image_geometry(inputs.vision, (448, 1344))
    assert (wide.grid, wide.num_tokens) == ((1, 3), 4 * 256)
    one = image_geometry(inputs.vision, (448, 448))
    assert (one.grid, one.num_tokens) == ((0, 0), 256)
    smol = inputs_from_config(ref.smolvlm2_2_2b_config(), "none", "float16")
    assert image_geometry(smol.vision, (200, 1024)).grid == (1, 4)  # 1536 long edge: 4 x 384


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_plan_counts_the_largest_layout(name: str) -> None:
    profile = load_profile("orin-nx-8gb")
    config = ref.TILED_REFERENCE_MODELS[name][0]()
    runtime = profile.runtime
    inputs = inputs_from_config(config, "4bit", runtime.compute_dtype, runtime.kv_cache_dtype)
    request = PlanRequest(prompt_tokens=64, max_new_tokens=64)
    try:
        plan = plan_budget(inputs, profile, request, memory_cap(profile))
    except PlanError as error:
        assert error.deficit_bytes > 0
        return
    assert plan.visual_tokens_available == EXPECTED[name][-1][1]
    assert 0 < plan.budget_tokens <= plan.visual_tokens_available
