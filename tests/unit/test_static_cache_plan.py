"""Issue 19's planner half: the static KV cache is counted whole, at its bucket's length."""

from __future__ import annotations

import pytest

from edge_hired.planner.arithmetic import MemoryCap, plan_budget, predict_lines
from edge_hired.planner.costs import CostKind, Phase
from edge_hired.planner.inputs import PlanRequest
from edge_hired.profiles import load_profile
from edge_hired.units import GIB, MIB
from tests.unit.test_budget_planner import SYNTH, SYNTH_KV_PER_TOKEN

STATIC = PlanRequest(prompt_tokens=40, max_new_tokens=32, static_kv_cache=True)


def lines_of(request: PlanRequest, visual: int) -> dict[str, int]:
    lines = predict_lines(SYNTH, load_profile("agx-orin-64gb"), request, visual)
    return {line.name: line.bytes for line in lines}


def test_the_static_cache_is_its_bucket_and_the_prefill_kv_its_prompt() -> None:
    """2880 visual + 40 prompt + 32 new = 2952 positions -> the 3072 bucket (3 x 1024) of
    32 KiB each (2 x 16 layers x 4 KV heads x 128 x 2 B); the prefill's own cache holds the
    2920 prompt positions, and no step copies a layer (no 1/16 extra)."""
    lines = lines_of(STATIC, 2880)
    assert SYNTH_KV_PER_TOKEN == 32 * 1024
    assert lines["static KV cache"] == 3072 * 32 * 1024 == 96 * MIB
    assert lines["KV cache"] == 2920 * 32 * 1024 == 95_682_560


def test_a_short_request_rounds_up_to_the_smallest_bucket() -> None:
    """100 + 40 + 32 = 172 positions -> 256: 256 x 32 KiB = 8 MiB, allocated whole."""
    assert lines_of(STATIC, 100)["static KV cache"] == 8 * MIB
    assert lines_of(STATIC, 184)["static KV cache"] == 8 * MIB  # 256 positions exactly
    assert lines_of(STATIC, 185)["static KV cache"] == 16 * MIB  # 257 -> 512


def test_the_static_cache_is_held_in_every_phase() -> None:
    assert CostKind.STATIC_KV_CACHE.phase is Phase.FIXED
    eager = lines_of(PlanRequest(prompt_tokens=40, max_new_tokens=32), 100)
    static = lines_of(STATIC, 100)
    assert "static KV cache" not in eager
    # 100 visual tokens: the encoder's phase (5 partitions, 144 MB) is the larger, so the LLM's
    # is taken back whole ("phases apart") whatever its KV; the held static cache is not
    assert static["phases apart"] == -(static["KV cache"] + static["prefill activations"])
    assert sum(static.values()) - sum(eager.values()) == 8 * MIB


@pytest.mark.parametrize("static", [False, True])
def test_the_plan_lists_the_line_by_kind(static: bool) -> None:
    request = PlanRequest(prompt_tokens=40, max_new_tokens=32, static_kv_cache=static)
    plan = plan_budget(SYNTH, load_profile("agx-orin-64gb"), request, MemoryCap(40 * GIB, "t"))
    kinds = [line.kind for line in plan.lines]
    assert (CostKind.STATIC_KV_CACHE in kinds) is static
    assert CostKind.KV_CACHE in kinds
