"""Time to first token of one request, and the largest visual-token count that meets a target.

TTFT = preprocess + encoder + prefill (to the first token). With a profile calibrated on this
model the three come from its least-squares fits (preprocess and encoder linear in the
partitions, prefill `a + b*n + c*n^2` in the LLM input tokens); otherwise from the roofline
estimate of the profile's peak figures, and the prediction says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_hired.errors import BudgetError
from edge_hired.planner.costs import device_facts, request_geometry
from edge_hired.planner.estimates import estimate_speed
from edge_hired.planner.fits import evaluate
from edge_hired.planner.measured import model_measurements

if TYPE_CHECKING:
    from edge_hired.planner.inputs import PlanInputs, PlanRequest
    from edge_hired.profiles import DeviceProfile


@dataclass(frozen=True)
class TtftPrediction:
    """Predicted TTFT in seconds and where the figure comes from."""

    seconds: float
    note: str


def predict_ttft(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual: int
) -> TtftPrediction:
    """TTFT of a request keeping `visual` tokens: calibrated fits, else the roofline estimate."""
    measured = model_measurements(profile, inputs)
    if measured is None:
        device = device_facts(profile, request.allocator)
        seconds = estimate_speed(inputs, device, request, visual).ttft_s
        return TtftPrediction(seconds, "roofline estimate (no calibration of this model)")
    fits = measured.calibration
    partitions, _ = request_geometry(inputs, request)
    tokens = visual + request.prompt_tokens + request.extra_tokens
    before = evaluate(fits.preprocess_s, partitions) + evaluate(fits.encoder_s, partitions)
    seconds = before + max(0.0, rising_prefill(fits.prefill_s, tokens))
    cold = fits.first_request_extra_s if request.first_request else 0.0
    note = f" + {cold:.2f} s first request" if cold else ""
    return TtftPrediction(seconds + cold, f"calibrated fits{note} ({fits.measured_at})")


def rising_prefill(coefficients: tuple[float, ...], tokens: float) -> float:
    """The prefill fit, held at its maximum past the vertex of a concave (c < 0) fit.

    Noisy timings can fit a slightly negative c; more tokens never take less time, so the
    prediction stays at the fit's largest value instead of falling (or going negative).
    """
    _, b, c = coefficients
    if c < 0 and tokens > -b / (2 * c):
        tokens = -b / (2 * c)
    return evaluate(coefficients, tokens)


def ttft_fit(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, target_s: float
) -> int:
    """Largest visual-token count (at most the image's) whose predicted TTFT meets `target_s`.

    Raises BudgetError when even one visual token is predicted slower than the target.
    """

    def meets(count: int) -> bool:
        return predict_ttft(inputs, profile, request, count).seconds <= target_s

    if not meets(1):
        slowest = predict_ttft(inputs, profile, request, 1)
        raise BudgetError(
            f"--ttft-target {target_s:g} s: even 1 visual token is predicted at "
            f"{slowest.seconds:.2f} s ({slowest.note}); preprocessing and the encoder alone "
            "take that long: raise the target or use a faster device"
        )
    _, available = request_geometry(inputs, request)
    low, high = 1, max(1, available)
    while low < high:  # the prediction never falls as tokens grow, so bisect
        middle = (low + high + 1) // 2
        low, high = (middle, high) if meets(middle) else (low, middle - 1)
    return low
