"""Roofline speed estimates: TTFT from peak FLOPs or bandwidth, decode rate from bandwidth.

These are estimates from the profile's peak figures, not measurements; the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_hired.planner.costs import request_geometry

if TYPE_CHECKING:
    from edge_hired.planner.costs import DeviceFacts
    from edge_hired.planner.inputs import PlanInputs, PlanRequest

#: Roofline estimates: shares of peak FLOPs and bandwidth assumed reachable.
COMPUTE_EFFICIENCY = 0.5
BANDWIDTH_EFFICIENCY = 0.7


@dataclass(frozen=True)
class Estimates:
    """Roofline estimates from the profile's peak figures, not measurements."""

    ttft_s: float
    decode_tokens_per_s: float
    note: str


def estimate_speed(
    inputs: PlanInputs, device: DeviceFacts, request: PlanRequest, visual: int
) -> Estimates:
    """Roofline TTFT and decode rate from the profile's peak FLOPs and bandwidth."""
    partitions, _ = request_geometry(inputs, request)
    tokens = visual + request.prompt_tokens + request.extra_tokens
    flops = _encoder_flops(inputs, partitions) + _prefill_flops(inputs, tokens)
    weights = inputs.llm_weight_bytes + inputs.encoder_weight_bytes
    compute = flops / (device.fp16_tflops * 1e12 * COMPUTE_EFFICIENCY)
    bandwidth = device.bandwidth_gb_s * 1e9 * BANDWIDTH_EFFICIENCY
    ttft = max(compute, weights / bandwidth)
    context = tokens + request.max_new_tokens / 2
    per_token = inputs.llm_weight_bytes + inputs.kv_bytes_per_token * context
    note = (
        f"estimates, not measurements: {COMPUTE_EFFICIENCY:.0%} of {device.fp16_tflops:g} "
        f"fp16 TFLOPS, {BANDWIDTH_EFFICIENCY:.0%} of {device.bandwidth_gb_s:g} GB/s"
    )
    return Estimates(ttft, bandwidth / per_token, note)


def _encoder_flops(inputs: PlanInputs, partitions: int) -> float:
    v = inputs.vision
    tokens = v.tokens_per_partition
    attention = 4 * v.layers_run * tokens**2 * v.hidden_size
    return partitions * (2 * inputs.vision_matmul_params * tokens + attention)


def _prefill_flops(inputs: PlanInputs, tokens: int) -> float:
    llm = inputs.llm
    attention = 2 * llm.num_layers * tokens**2 * llm.num_heads * llm.head_dim  # causal half
    return 2 * inputs.llm_matmul_params * tokens + attention
