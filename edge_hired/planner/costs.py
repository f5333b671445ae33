"""The memory model: what each part of one request costs, as lines of the peak's breakdown.

Measured on the development machine (x86_64, 2 cores, glibc, torch 2.13 CPU, transformers 5.23),
peak RSS of one request; `scripts/plan_table.py --calibrate` reproduces the runtime figure:
- runtime: Python + torch + transformers + LLaVA classes + processor, with the first request's
  lazy initialisation: `RUNTIME_HOST_BYTES`.
- image: the decoded RGB image (3 B/pixel) plus the PIL image processor's working copies
  (~10 B/pixel) plus ~4 float32 copies of the pixel values per partition.
- live activations (allocations alive at the peak, measured with glibc's mmap threshold pinned so
  RSS equals the live set): CLIP encoder 3 x intermediate + 7.5 x hidden elements per token per
  partition (577 tokens); Llama prefill 3 x intermediate + 5.5 x hidden elements per token, plus
  2 x hidden for fp16/bf16 (RMSNorm works in fp32); SDPA never materialised T x T scores.
- allocator: with glibc's default dynamic mmap threshold, the prefill's RSS peak was 1.0-3.1x its
  live set (6 Llama shapes, fp32 and bf16; typically 1.8-2.7, and it varied between identical
  runs: freed activations stay in the heap between the per-layer KV blocks); the encoder's was
  1.2-1.5x. The prediction takes the typical factor and the margin adds the spread up to the
  worst one; the CUDA factors are estimates for PyTorch's caching allocator, not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.planner.measured import ModelMeasurements, model_measurements
from edge_hired.units import GIB, KIB, MIB, dtype_bytes

if TYPE_CHECKING:
    from edge_hired.planner.inputs import PlanInputs, PlanRequest
    from edge_hired.profiles import DeviceProfile

#: Measured: peak RSS of the tiny preset answering a one-token request on a 336x336 image, minus
#: the model's own modelled bytes (`scripts/plan_table.py --calibrate`: 362 and 359 MiB in two
#: sessions, medians of three processes each). Host memory only.
RUNTIME_HOST_BYTES = 360 * MIB
DECODED_BYTES_PER_PIXEL = 3
PREPROCESS_BYTES_PER_PIXEL = 10
PIXEL_VALUE_COPIES = 4
DEFAULT_IMAGE_HW = (1080, 1920)  # assumed when the plan is made without an image

ENCODER_LIVE = (3.0, 7.5)  # elements per token: x intermediate, x hidden
PREFILL_LIVE = (3.0, 5.5)
HALF_NORM_EXTRA = 2.0  # extra hidden-sized elements per token in fp16/bf16 (fp32 RMSNorm)
#: allocator -> stage -> (typical, worst) factor from the live set to the RSS / device peak.
#: The prediction uses the typical factor; the margin adds the difference to the worst.
ALLOCATOR_FACTORS = {
    "cpu": {"encoder": (1.4, 1.5), "prefill": (2.0, 3.1)},
    "cuda": {"encoder": (1.25, 1.25), "prefill": (1.5, 1.5)},  # estimates, not measured
}


@dataclass(frozen=True)
class CostLine:
    """One line of the peak-memory breakdown."""

    name: str
    bytes: int
    note: str


@dataclass(frozen=True)
class DeviceFacts:
    """The profile's facts the arithmetic uses."""

    name: str
    host_counts: bool
    runtime_bytes: int
    runtime_note: str
    cuda_context_bytes: int
    encoder_factors: tuple[float, float]  # (typical, worst)
    prefill_factors: tuple[float, float]
    allocator: str
    bandwidth_gb_s: float
    fp16_tflops: float
    measured: ModelMeasurements | None = None  # calibrated activations of this very model


def device_facts(
    profile: DeviceProfile, allocator: str | None, inputs: PlanInputs | None = None
) -> DeviceFacts:
    """The profile's figures; host memory (runtime, image) counts only where it is shared.

    A calibrated profile's measured fixed costs replace the written ones; its activation peaks
    apply only to the model it measured (`inputs`).
    """
    memory = profile.memory
    kind = allocator or profile.runtime.device
    if kind not in ALLOCATOR_FACTORS:
        raise InvalidArgumentError(expected("allocator", " or ".join(ALLOCATOR_FACTORS), kind))
    runtime, note = _runtime_bytes(profile)
    measured = None if inputs is None else model_measurements(profile, inputs)
    return DeviceFacts(
        profile.name,
        memory.unified,
        int(runtime) if memory.unified else 0,
        f"Python, torch, transformers: {note}",
        _cuda_context_bytes(profile),
        ALLOCATOR_FACTORS[kind]["encoder"],
        ALLOCATOR_FACTORS[kind]["prefill"],
        kind,
        profile.performance.bandwidth_gb_s,
        profile.performance.fp16_tflops,
        measured,
    )


def _runtime_bytes(profile: DeviceProfile) -> tuple[float, str]:
    """The runtime's resident bytes: calibrated, else the profile's, else the CPU measurement."""
    if profile.calibration is not None:
        return profile.calibration.runtime_gib * GIB, "measured by profile calibrate"
    if profile.memory.runtime_gib is not None:
        return profile.memory.runtime_gib * GIB, "from the profile"
    return RUNTIME_HOST_BYTES, "measured on the CPU build"


def _cuda_context_bytes(profile: DeviceProfile) -> int:
    """The CUDA context: calibrated where it was measured, else the profile's figure."""
    calibration = profile.calibration
    if calibration is not None and calibration.cuda_context_gib is not None:
        return int(calibration.cuda_context_gib * GIB)
    return int(profile.memory.cuda_context_gib * GIB)


def request_geometry(inputs: PlanInputs, request: PlanRequest) -> tuple[int, int]:
    """(partitions, visual tokens) of the request, defaulting to the model's largest layout."""
    partitions, tokens = inputs.max_geometry()
    return request.partitions or partitions, (
        tokens if request.visual_tokens is None else request.visual_tokens
    )


def image_bytes(image_hw: tuple[int, int], partitions: int, crop_size: int) -> int:
    """Decoded image, the processor's working copies, and the float32 pixel values."""
    pixels = image_hw[0] * image_hw[1]
    per_pixel = DECODED_BYTES_PER_PIXEL + PREPROCESS_BYTES_PER_PIXEL
    return pixels * per_pixel + PIXEL_VALUE_COPIES * partitions * 3 * crop_size**2 * 4


def encoder_live_bytes_per_partition(inputs: PlanInputs) -> int:
    """Modelled live set of the CLIP encoder for one partition."""
    v = inputs.vision
    elements = ENCODER_LIVE[0] * v.intermediate_size + ENCODER_LIVE[1] * v.hidden_size
    return int(v.tokens_per_partition * elements * dtype_bytes(inputs.vision_dtype))


def prefill_live_bytes_per_token(inputs: PlanInputs) -> int:
    """Modelled live set of one layer's prefill, per token."""
    llm, size = inputs.llm, dtype_bytes(inputs.compute_dtype)
    elements = PREFILL_LIVE[0] * llm.intermediate_size + PREFILL_LIVE[1] * llm.hidden_size
    if size < 4:
        elements += HALF_NORM_EXTRA * llm.hidden_size
    return int(elements * size)


def fixed_lines(inputs: PlanInputs, device: DeviceFacts, request: PlanRequest) -> list[CostLine]:
    """Costs that do not depend on the visual-token count."""
    partitions, _ = request_geometry(inputs, request)
    hw = request.image_hw or DEFAULT_IMAGE_HW
    lines = [
        CostLine("runtime", device.runtime_bytes, device.runtime_note),
        CostLine("CUDA context", device.cuda_context_bytes, "from the profile"),
        CostLine(
            "LLM weights", inputs.llm_weight_bytes, f"{inputs.quantization}, {inputs.compute_dtype}"
        ),
        CostLine("encoder weights", inputs.encoder_weight_bytes, "vision tower + projector"),
    ]
    if device.host_counts:
        lines.append(CostLine("ONNX Runtime", inputs.onnx_runtime_bytes, "bundle encoder runtime"))
        lines.append(
            CostLine(
                "image",
                image_bytes(hw, partitions, inputs.vision.crop_size),
                f"{hw[1]}x{hw[0]} px, {partitions} partitions",
            )
        )
    lines.append(_encoder_line(inputs, device, partitions))
    if inputs.largest_quantized_linear:
        buffer = inputs.largest_quantized_linear * dtype_bytes(inputs.compute_dtype)
        lines.append(CostLine("dequant buffer", buffer, "largest quantised Linear, dequantised"))
    return [line for line in lines if line.bytes or "weights" in line.name]


def _encoder_line(inputs: PlanInputs, device: DeviceFacts, partitions: int) -> CostLine:
    if device.measured is not None:
        return CostLine(
            "encoder activations",
            device.measured.encoder_bytes_per_partition * partitions,
            f"measured by profile calibrate, {partitions} partitions",
        )
    measured = inputs.measured_encoder_bytes_per_partition
    if measured:
        return CostLine(
            "encoder activations",
            measured * partitions,
            f"measured at export, {partitions} partitions",
        )
    live = encoder_live_bytes_per_partition(inputs) * partitions
    factor = device.encoder_factors[0]
    return CostLine(
        "encoder activations",
        int(live * factor),
        f"modelled, {partitions} partitions x{factor:g} allocator",
    )


def per_token_bytes(inputs: PlanInputs, device: DeviceFacts) -> tuple[float, float]:
    """(KV bytes incl. the decode-time copy of one layer, prefill activation bytes) per token."""
    kv = inputs.kv_bytes_per_token * (1 + 1 / inputs.llm.num_layers)
    if device.measured is not None:
        return kv, device.measured.prefill_bytes_per_token
    return kv, prefill_live_bytes_per_token(inputs) * device.prefill_factors[0]


def token_lines(
    inputs: PlanInputs, device: DeviceFacts, request: PlanRequest, visual: int
) -> list[CostLine]:
    """KV cache and prefill activations for `visual` visual tokens."""
    kv, act = per_token_bytes(inputs, device)
    text = request.prompt_tokens + request.extra_tokens
    cached = visual + text + request.max_new_tokens
    per_kib = inputs.kv_bytes_per_token / KIB
    return [
        CostLine(
            "KV cache",
            int(kv * cached),
            f"{visual} visual + {text} prompt + {request.max_new_tokens} new tokens"
            f" x {per_kib:.1f} KiB ({inputs.kv_dtype})",
        ),
        CostLine(
            "prefill activations",
            int(act * (visual + text)),
            _prefill_note(device, visual + text),
        ),
    ]


def _prefill_note(device: DeviceFacts, tokens: int) -> str:
    if device.measured is not None:
        return f"measured by profile calibrate, {tokens} tokens"
    return f"modelled, {tokens} tokens x{device.prefill_factors[0]:g} allocator"
