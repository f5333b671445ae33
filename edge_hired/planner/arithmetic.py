"""The budget itself: the predicted peak at a visual-token count, the margin, and the largest fit.

Everything but the visual-token count is fixed for a request, so the budget is the largest count
whose predicted peak plus margin fits under the cap; `plan_budget` returns it with the breakdown
and the reasons, or raises `PlanError` naming the deficit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edge_hired.errors import BudgetError, InvalidArgumentError, expected
from edge_hired.planner.costs import (
    DEFAULT_IMAGE_HW,
    CostKind,
    CostLine,
    DeviceFacts,
    Phase,
    attention_note,
    device_facts,
    encoder_live_bytes_per_partition,
    fixed_lines,
    per_token_bytes,
    prefill_live_bytes_per_token,
    request_geometry,
    token_lines,
)
from edge_hired.planner.estimates import Estimates, estimate_speed
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.planner.measured import calibration_note
from edge_hired.planner.ttft import TtftPrediction, predict_ttft, ttft_fit
from edge_hired.units import KIB, MIB, dtype_bytes, gib

if TYPE_CHECKING:
    from edge_hired.profiles import DeviceProfile

MARGIN_FRACTION = 0.05
MARGIN_MIN_BYTES = 64 * MIB


class PlanError(BudgetError):
    """The cap cannot hold the fixed costs plus one visual token (short by `deficit_bytes`)."""

    def __init__(self, message: str, deficit_bytes: int) -> None:
        super().__init__(message)
        self.deficit_bytes = deficit_bytes


@dataclass(frozen=True)
class MemoryCap:
    """The memory a request may use, and where that figure comes from."""

    bytes: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """The budget, the breakdown of the peak at that budget, and why."""

    profile: str
    source: str
    cap: MemoryCap
    budget_tokens: int
    visual_tokens_available: int
    lines: tuple[CostLine, ...]
    peak_bytes: int  # predicted peak without the margin
    required_bytes: int  # peak + margin
    bytes_per_visual_token: int
    reasons: tuple[str, ...]
    estimates: Estimates
    request: PlanRequest = field(default_factory=PlanRequest)
    predicted_ttft_s: float = 0.0  # preprocess + encoder + prefill at the budget
    ttft_note: str = ""  # calibrated fits, or a roofline estimate
    ttft_target_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def margin_bytes(peak: int, spread: int = 0) -> int:
    """Safety margin on top of a predicted peak: a share of it plus the allocator spread."""
    return max(MARGIN_MIN_BYTES, int(MARGIN_FRACTION * peak)) + spread


def spread_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """What the modelled activations may add above the prediction: worst minus typical factor.

    Phases that alternate spread as the larger one at its worst; a held encoder arena is
    already counted at its worst factor, so only the LLM phase's spread adds to it.
    """
    device = device_facts(profile, request.allocator, inputs)
    partitions, _ = request_geometry(inputs, request)
    encoder = llm = 0.0
    held = request.encoder_held
    if device.measured is None and not inputs.measured_encoder_bytes_per_partition and not held:
        extra = device.encoder_factors[1] - device.encoder_factors[0]
        encoder = encoder_live_bytes_per_partition(inputs) * partitions * extra
    if device.measured is None:
        tokens = visual_tokens + request.prompt_tokens + request.extra_tokens
        extra = device.prefill_factors[1] - device.prefill_factors[0]
        llm = prefill_live_bytes_per_token(inputs) * tokens * extra
    phases = _phase_bytes(predict_lines(inputs, profile, request, visual_tokens))
    worst = max(phases[0] + encoder, phases[1] + llm)
    return int(worst - max(phases))


def required_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """Predicted peak plus margin: what must fit under the cap."""
    peak = predicted_peak_bytes(inputs, profile, request, visual_tokens)
    return peak + margin_bytes(peak, spread_bytes(inputs, profile, request, visual_tokens))


#: The line that takes back the smaller phase. The encoder's activations in torch (or ONNX
#: Runtime on the CPU) are freed before the LLM's prefill (measured on the mid-size preset,
#: README "Peak memory of one request"), so the peak holds the larger phase, not both. An
#: ONNX Runtime GPU arena is held instead (`costs.arena_line`, a fixed cost): then nothing is
#: taken back and the phases add.
OVERLAP = "phases apart"


def predict_lines(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> list[CostLine]:
    """The breakdown of the predicted peak for a given visual-token count (no margin).

    Unless the encoder's arena is held (then the phases add), the last line takes back the
    smaller phase, so the lines sum to the peak.
    """
    device = device_facts(profile, request.allocator, inputs)
    lines = fixed_lines(inputs, device, request)
    lines += token_lines(inputs, device, request, visual_tokens)
    if request.encoder_held:
        return lines
    smaller = min(_phase_bytes(lines))
    note = "encoder activations are freed before the prefill: the larger phase counts"
    return [*lines, CostLine(OVERLAP, -smaller, note, CostKind.OVERLAP)]


def _phase_bytes(lines: list[CostLine]) -> tuple[int, int]:
    """(encoder phase, LLM phase) bytes of a breakdown, summed by the lines' kinds."""
    encoder = sum(line.bytes for line in lines if line.kind.phase is Phase.ENCODER)
    return encoder, sum(line.bytes for line in lines if line.kind.phase is Phase.LLM)


def predicted_peak_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """Predicted peak of a request keeping `visual_tokens` (no margin)."""
    return sum(line.bytes for line in predict_lines(inputs, profile, request, visual_tokens))


#: Largest visual-token count `largest_fit` considers (far above any image's).
MAX_TOKENS = 1 << 20


def largest_fit(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap_bytes: int
) -> int:
    """Largest visual-token count (not capped by the image) whose peak + margin fits; 0 if none.

    The required bytes never fall as tokens grow (a max of rising phases), so bisection finds it.
    """

    def fits(count: int) -> bool:
        return required_bytes(inputs, profile, request, count) <= cap_bytes

    low, high = 0, MAX_TOKENS
    if not fits(low):
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def plan_budget(
    inputs: PlanInputs,
    profile: DeviceProfile,
    request: PlanRequest,
    cap: MemoryCap,
    ttft_target_s: float | None = None,
) -> Plan:
    """The largest visual-token budget that fits under `cap` (and meets the TTFT target).

    Raises PlanError naming the deficit when not even one visual token fits, BudgetError when
    the TTFT target cannot be met with one.
    """
    _check_request(request)
    _, available = request_geometry(inputs, request)
    fit = largest_fit(inputs, profile, request, cap.bytes)
    if fit < 1:
        need = required_bytes(inputs, profile, request, 1)
        raise PlanError(_deficit_message(inputs, profile, request, cap, need), need - cap.bytes)
    fast = None if ttft_target_s is None else ttft_fit(inputs, profile, request, ttft_target_s)
    budget = min(fit, available, fast or available)
    lines = predict_lines(inputs, profile, request, budget)
    peak = sum(line.bytes for line in lines)
    device = device_facts(profile, request.allocator, inputs)
    margin = _margin_line(peak, spread_bytes(inputs, profile, request, budget))
    ttft = predict_ttft(inputs, profile, request, budget)
    reasons = _reasons(inputs, device, request, cap, budget, available, fit)
    return Plan(
        profile=profile.name,
        source=inputs.source,
        cap=cap,
        budget_tokens=budget,
        visual_tokens_available=available,
        lines=(*lines, margin),
        peak_bytes=peak,
        required_bytes=peak + margin.bytes,
        bytes_per_visual_token=int(sum(per_token_bytes(inputs, device))),
        reasons=(*reasons, *_ttft_reasons(profile, inputs, ttft, ttft_target_s, fast)),
        estimates=estimate_speed(inputs, device, request, budget),
        request=request,
        predicted_ttft_s=ttft.seconds,
        ttft_note=ttft.note,
        ttft_target_s=ttft_target_s,
    )


def _margin_line(peak: int, spread: int) -> CostLine:
    return CostLine(
        "margin",
        margin_bytes(peak, spread),
        f"{MARGIN_FRACTION:.0%} of the peak (at least 64 MiB) + allocator spread "
        f"{spread / MIB:.0f} MiB",
        CostKind.MARGIN,
    )


def _ttft_reasons(
    profile: DeviceProfile,
    inputs: PlanInputs,
    ttft: TtftPrediction,
    target_s: float | None,
    fast: int | None,
) -> list[str]:
    """Where the TTFT figure comes from, and what the target allowed."""
    reasons = [note] if (note := calibration_note(profile, inputs)) else []
    reasons.append(f"TTFT: predicted {ttft.seconds:.2f} s at the budget, {ttft.note}")
    if target_s is not None:
        reasons.append(f"--ttft-target {target_s:g} s: at most {fast} visual tokens")
    return reasons


def _check_request(request: PlanRequest) -> None:
    for name in ("prompt_tokens", "max_new_tokens", "extra_tokens"):
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgumentError(expected(name, "an integer >= 0", value))


def _deficit_message(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: MemoryCap, need: int
) -> str:
    """'<profile>: memory cap X GiB is Y GiB short of ...', naming the biggest fixed costs."""
    fixed = fixed_lines(inputs, device_facts(profile, request.allocator, inputs), request)
    biggest = sorted(fixed, key=lambda line: -line.bytes)[:4]
    items = ", ".join(f"{line.name} {gib(line.bytes)}" for line in biggest)
    return (
        f"{profile.name}: memory cap {gib(cap.bytes)} GiB ({cap.reason}) is "
        f"{gib(need - cap.bytes)} GiB short of the fixed costs plus one visual token and margin "
        f"({gib(need)} GiB; largest: {items}); use a smaller quantization, a device with more "
        f"memory, or a larger --memory-cap"
    )


def _reasons(
    inputs: PlanInputs,
    device: DeviceFacts,
    request: PlanRequest,
    cap: MemoryCap,
    budget: int,
    available: int,
    fit: int,
) -> tuple[str, ...]:
    llm = inputs.llm
    kv = (
        f"KV cache: 2 x {llm.num_layers} layers x {llm.num_kv_heads} KV heads x "
        f"{llm.head_dim} head dim x {dtype_bytes(inputs.kv_dtype)} B ({inputs.kv_dtype}) = "
        f"{inputs.kv_bytes_per_token / KIB:.1f} KiB per token"
    )
    reasons = [f"cap: {gib(cap.bytes)} GiB, {cap.reason}", kv, *inputs.notes]
    if not inputs.measured_encoder_bytes_per_partition:
        reasons.append("encoder activations: modelled (no measured figure recorded)")
    if note := attention_note(inputs):
        reasons.append(note)
    (enc, enc_worst), (pre, pre_worst) = device.encoder_factors, device.prefill_factors
    reasons.append(
        f"activations: live set x {enc:g} (encoder) and x {pre:g} (prefill) for the "
        f"{device.allocator} allocator; the margin covers up to x {enc_worst:g} and "
        f"x {pre_worst:g}"
    )
    if request.image_hw is None or request.partitions is None:
        h, w = request.image_hw or DEFAULT_IMAGE_HW
        reasons.append(f"image: assumed {w}x{h} px in the model's largest layout")
    if fit >= available:
        reasons.append(
            f"budget: all {available} visual tokens fit (room for {fit - available} more)"
        )
    else:
        reasons.append(f"budget: {budget} of {available} visual tokens fit under the cap")
    return tuple(reasons)
