"""When a plan does not fit: what would, each change on its own, with the visual tokens it admits.

The changes a user can make without new hardware: boot headless (the desktop's memory comes
back), 4-bit weights instead of 8-bit, a smaller KV-cache dtype, a smaller LLM, fewer new tokens.
Each is planned with the same arithmetic as the plan that failed. The smaller model keeps this
model's KV and activation costs per token (its shape is unknown): an upper bound on the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_hired.planner.arithmetic import MemoryCap, largest_fit, required_bytes
from edge_hired.planner.costs import request_geometry
from edge_hired.units import GIB, dtype_bytes, gib

if TYPE_CHECKING:
    from edge_hired.planner.inputs import PlanInputs, PlanRequest
    from edge_hired.profiles import DeviceProfile

#: Budgets at which the largest LLM that fits is reported.
MODEL_SHARES = (0.2, 1.0)


@dataclass(frozen=True)
class FitOption:
    """One change and what it buys: `tokens` visual tokens fit (0: still `short_bytes` short)."""

    change: str
    tokens: int
    short_bytes: int = 0

    def line(self, available: int) -> str:
        """'- <change>: then N visual tokens fit (P%)' or '... still X GiB short'."""
        if self.tokens < 1:
            return f"- {self.change}: still {gib(self.short_bytes)} GiB short"
        share = 100 * self.tokens / max(available, 1)
        return f"- {self.change}: then {self.tokens} visual tokens fit ({share:.0f}%)"


def _option(
    change: str, inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: int
) -> FitOption:
    _, available = request_geometry(inputs, request)
    tokens = min(largest_fit(inputs, profile, request, cap), available)
    short = 0 if tokens else required_bytes(inputs, profile, request, 1) - cap
    return FitOption(change, tokens, short)


def fit_options(
    inputs: PlanInputs,
    profile: DeviceProfile,
    request: PlanRequest,
    cap: MemoryCap,
    four_bit: PlanInputs | None = None,
) -> list[FitOption]:
    """The applicable changes, each planned alone; `four_bit`: these weights in 4-bit."""
    found = []
    if profile.memory.desktop and profile.memory.desktop_gib > 0:
        freed = int(profile.memory.desktop_gib * GIB)
        change = f"boot headless (frees the desktop's {gib(freed)} GiB)"
        found.append(_option(change, inputs, profile, request, cap.bytes + freed))
    if four_bit is not None:
        found.append(
            _option("4-bit weights instead of 8-bit", four_bit, profile, request, cap.bytes)
        )
    if dtype_bytes(inputs.kv_dtype) > 2:
        change = f"KV cache in float16 instead of {inputs.kv_dtype}"
        found.append(_option(change, inputs.with_kv_dtype("float16"), profile, request, cap.bytes))
    if request.max_new_tokens > 1:
        fewer = max(1, request.max_new_tokens // 4)
        change = f"--max-new-tokens {fewer} instead of {request.max_new_tokens}"
        shorter = replace(request, max_new_tokens=fewer)
        found.append(_option(change, inputs, profile, shorter, cap.bytes))
    return found + smaller_models(inputs, profile, request, cap)


def smaller_models(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: MemoryCap
) -> list[FitOption]:
    """The largest LLM (weights, and parameters at this quantization) that fits at each share."""
    _, available = request_geometry(inputs, request)
    per_param = inputs.llm_weight_bytes / max(inputs.llm_matmul_params, 1)
    found = []
    for share in MODEL_SHARES:
        tokens = max(1, int(share * available))
        weights = largest_llm_bytes(inputs, profile, request, cap.bytes, tokens)
        if 0 < weights < inputs.llm_weight_bytes:  # 0: not even without an LLM
            params = weights / per_param / 1e9
            change = (
                f"a smaller LLM, at most {gib(weights)} GiB of weights (~{params:.2f}B "
                f"parameters at {inputs.quantization})"
            )
            found.append(FitOption(change, tokens))
    return found


def largest_llm_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: int, tokens: int
) -> int:
    """Largest LLM weight bytes with which `tokens` visual tokens still fit (0 if none)."""

    def fits(weights: int) -> bool:
        smaller = replace(inputs, llm_weight_bytes=weights)
        return required_bytes(smaller, profile, request, tokens) <= cap

    low, high = 0, inputs.llm_weight_bytes
    if not fits(low):
        return 0
    while high - low > 1 << 20:  # to the MiB
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def format_options(options: list[FitOption], available: int = 0) -> str:
    """The options as lines under a heading; the share is of `available` tokens."""
    if not options:
        return "nothing short of a device with more memory would fit"
    lines = [option.line(available) for option in options]
    return "what would fit (each change alone):\n" + "\n".join(lines)
