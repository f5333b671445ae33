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
from enum import Enum
from typing import TYPE_CHECKING

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.planner.buckets import length_bucket
from edge_hired.planner.measured import ModelMeasurements, model_measurements
from edge_hired.planner.shapes import attention_scores
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
#: An exported native graph (Qwen-VL) holds one query chunk's attention scores at a time (heads
#: x ceil(N / chunks) query rows x N keys): peak bytes per score by (graph dtype, windowed
#: blocks). Measured with ONNX Runtime CPU, `scripts/measure_native_encoder.py` on the tiny
#: presets, fitted as bytes per patch + bytes per score on 8,100 and 16,384 patches (ONNX
#: Runtime's arena included, so not scaled by the allocator factor): full attention 4.2 B (fp32:
#: the softmax runs in place on the scores) and 7.8 B (fp16: the fp32 softmax beside the fp16
#: scores); Qwen2.5-VL's masked blocks 17.7 and 20.4 B (the masked copy of the scores, and
#: ONNX Runtime's planner keeps buffers of earlier chunks).
ATTENTION_SCORE_BYTES = {
    ("float32", False): 5,
    ("float16", False): 8,
    ("float32", True): 18,
    ("float16", True): 21,
}
PREFILL_LIVE = (3.0, 5.5)
HALF_NORM_EXTRA = 2.0  # extra hidden-sized elements per token in fp16/bf16 (fp32 RMSNorm)
#: allocator -> stage -> (typical, worst) factor from the live set to the RSS / device peak.
#: The prediction uses the typical factor; the margin adds the difference to the worst.
ALLOCATOR_FACTORS = {
    "cpu": {"encoder": (1.4, 1.5), "prefill": (2.0, 3.1)},
    "cuda": {"encoder": (1.25, 1.25), "prefill": (1.5, 1.5)},  # estimates, not measured
}


class Phase(Enum):
    """When a cost is held: all along, or only in the encoder's or the LLM's phase."""

    FIXED = "fixed"
    ENCODER = "encoder"
    LLM = "llm"


class CostKind(str, Enum):
    """What a cost line is. The arithmetic sums by kind, never by the line's display name.

    A `str` Enum so a plan's JSON (`Plan.to_dict`) writes the value.
    """

    RUNTIME = "runtime"
    CUDA_CONTEXT = "cuda_context"
    LLM_WEIGHTS = "llm_weights"
    ENCODER_WEIGHTS = "encoder_weights"
    ONNX_RUNTIME = "onnx_runtime"
    IMAGE = "image"
    ENCODER_ACTIVATIONS = "encoder_activations"  # freed before the prefill (torch, ORT on CPU)
    ENCODER_ARENA = "encoder_arena"  # ONNX Runtime's GPU arena: held for the session
    DEQUANT_BUFFER = "dequant_buffer"
    KV_CACHE = "kv_cache"
    #: `--compile`: the decode's static KV cache, allocated whole at its bucket's length and
    #: kept for the next request of that bucket, so held in every phase (issue 19).
    STATIC_KV_CACHE = "static_kv_cache"
    PREFILL_ACTIVATIONS = "prefill_activations"
    OVERLAP = "overlap"  # takes back the smaller of two phases that do not coexist
    MARGIN = "margin"

    @property
    def phase(self) -> Phase:
        """The phase this kind of cost belongs to."""
        return _PHASES.get(self, Phase.FIXED)

    @property
    def is_weights(self) -> bool:
        """Weights are listed even at 0 bytes (a plan always shows them)."""
        return self in (CostKind.LLM_WEIGHTS, CostKind.ENCODER_WEIGHTS)


_PHASES = {
    CostKind.ENCODER_ACTIVATIONS: Phase.ENCODER,
    CostKind.KV_CACHE: Phase.LLM,
    CostKind.PREFILL_ACTIVATIONS: Phase.LLM,
}


@dataclass(frozen=True)
class CostLine:
    """One line of the peak-memory breakdown: a display name, bytes, a note and its kind."""

    name: str
    bytes: int
    note: str
    kind: CostKind


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


def attention_peak_bytes(inputs: PlanInputs) -> int:
    """One block's attention in an exported native graph: heads x ceil(N / chunks) x N scores x
    `ATTENTION_SCORE_BYTES`; 0 in process (SDPA never holds the scores)."""
    scores = attention_scores(inputs.vision)
    if not scores:
        return 0
    windowed = inputs.vision.window_size > 0
    dtype = inputs.vision_dtype if inputs.vision_dtype == "float16" else "float32"
    return scores * ATTENTION_SCORE_BYTES[dtype, windowed]


def attention_note(inputs: PlanInputs) -> str | None:
    """What the encoder line assumed of the exported graph's attention (None: nothing held)."""
    scores, v = attention_scores(inputs.vision), inputs.vision
    if not scores:
        return None
    patches, size = v.tokens_per_partition, attention_peak_bytes(inputs)
    masked = ", windowed blocks masked" if v.window_size else ""
    return (
        f"encoder attention: {v.num_heads} heads x {scores // (v.num_heads * patches)} query "
        f"rows x {patches} keys ({patches} patches in {v.attention_query_chunks} query chunks) x "
        f"{size // scores} B ({inputs.vision_dtype} graph{masked}) = {size / MIB:.1f} MiB, "
        f"one block at a time"
    )


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
    lines = _resident_lines(inputs, device)
    if device.host_counts:
        hw = request.image_hw or DEFAULT_IMAGE_HW
        ort = inputs.onnx_runtime_bytes
        runtime = CostLine("ONNX Runtime", ort, "bundle encoder runtime", CostKind.ONNX_RUNTIME)
        image = image_bytes(hw, partitions, inputs.vision.crop_size)
        note = f"{hw[1]}x{hw[0]} px, {partitions} partitions"
        lines += [runtime, CostLine("image", image, note, CostKind.IMAGE)]
    held = request.encoder_held
    lines.append(arena_line(inputs, device) if held else _encoder_line(inputs, device, partitions))
    if inputs.largest_quantized_linear:
        buffer = inputs.largest_quantized_linear * dtype_bytes(inputs.compute_dtype)
        note = "largest quantised Linear, dequantised"
        lines.append(CostLine("dequant buffer", buffer, note, CostKind.DEQUANT_BUFFER))
    return [line for line in lines if line.bytes or line.kind.is_weights]


def _resident_lines(inputs: PlanInputs, device: DeviceFacts) -> list[CostLine]:
    """Runtime, CUDA context and weights: held from load to exit."""
    return [
        CostLine("runtime", device.runtime_bytes, device.runtime_note, CostKind.RUNTIME),
        CostLine(
            "CUDA context", device.cuda_context_bytes, "from the profile", CostKind.CUDA_CONTEXT
        ),
        CostLine(
            "LLM weights",
            inputs.llm_weight_bytes,
            f"{inputs.quantization}, {inputs.compute_dtype}",
            CostKind.LLM_WEIGHTS,
        ),
        CostLine(
            "encoder weights",
            inputs.encoder_weight_bytes,
            "vision tower + projector",
            CostKind.ENCODER_WEIGHTS,
        ),
    ]


def _encoder_line(inputs: PlanInputs, device: DeviceFacts, partitions: int) -> CostLine:
    """The encoder's activations for this request's partitions, freed before the prefill."""
    factor = device.encoder_factors[0]
    size, note = _encoder_bytes(inputs, device.measured, partitions, factor)
    return CostLine("encoder activations", size, note, CostKind.ENCODER_ACTIVATIONS)


def _encoder_bytes(
    inputs: PlanInputs, calibrated: ModelMeasurements | None, partitions: int, factor: float
) -> tuple[int, str]:
    """(bytes, note) of the encoder's activations: calibrated, measured at export, or modelled."""
    if calibrated is not None:
        per_partition = calibrated.encoder_bytes_per_partition
        return per_partition * partitions, f"measured by profile calibrate, {partitions} partitions"
    measured = inputs.measured_encoder_bytes_per_partition
    if measured:
        return measured * partitions, f"measured at export, {partitions} partitions"
    live = encoder_live_bytes_per_partition(inputs) * partitions
    note = f"modelled, {partitions} partitions x{factor:g} allocator"
    attention = attention_peak_bytes(inputs)  # one image, one partition
    if attention:
        note += f", + one block's attention scores {attention / MIB:.1f} MiB"
    return int(live * factor) + attention, note


def arena_line(inputs: PlanInputs, device: DeviceFacts) -> CostLine:
    """ONNX Runtime's GPU arena: sized for the model's largest layout and held for the session.

    Its CUDA arena never returns what it grew (onnxruntime#14957) and a TensorRT context is
    sized for the profile's largest shape, so after any request the arena holds what the
    largest image needs, whatever this request's image: it counts all along, at the worst
    allocator factor, and adds to the LLM's phase instead of alternating with it.
    """
    size, note = _arena_bytes(inputs, device.measured, device.encoder_factors[1])
    return CostLine(
        "encoder arena", size, f"ONNX Runtime GPU arena, held: {note}", CostKind.ENCODER_ARENA
    )


def _arena_bytes(
    inputs: PlanInputs, calibrated: ModelMeasurements | None, factor: float
) -> tuple[int, str]:
    partitions, _ = inputs.max_geometry()
    return _encoder_bytes(inputs, calibrated, partitions, factor)


def holds_arena(provider: str | None) -> bool:
    """Whether an encoder on this ONNX Runtime provider keeps its arena (any GPU provider).

    None or "torch:<device>": the encoder runs in torch, whose activations are freed.
    """
    if provider is None or provider.startswith("torch:"):
        return False
    return provider != "CPUExecutionProvider"


def ort_gpu_mem_limit(inputs: PlanInputs, device: DeviceFacts | None = None) -> int:
    """The CUDA arena limit that keeps ONNX Runtime to the plan: the encoder's weights (its
    initializers live in the arena too) plus the held arena line, rounded up to a MiB.

    Without `device` (loading a bundle, no profile at hand): the manifest's figures and the
    CUDA allocator's worst factor, which is the plan's line on any uncalibrated CUDA profile.
    """
    if device is None:
        held, _ = _arena_bytes(inputs, None, ALLOCATOR_FACTORS["cuda"]["encoder"][1])
    else:
        held = arena_line(inputs, device).bytes
    size = inputs.encoder_weight_bytes + held
    return -(-size // MIB) * MIB


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
    prefill = CostLine(
        "prefill activations",
        int(act * (visual + text)),
        _prefill_note(device, visual + text),
        CostKind.PREFILL_ACTIVATIONS,
    )
    state = linear_state_lines(inputs)
    if request.static_kv_cache:
        return [*static_kv_lines(inputs, visual, text, request.max_new_tokens), *state, prefill]
    return [
        CostLine(
            "KV cache",
            int(kv * cached),
            f"{visual} visual + {text} prompt + {request.max_new_tokens} new tokens"
            f" x {per_kib:.1f} KiB ({inputs.kv_dtype})",
            CostKind.KV_CACHE,
        ),
        *state,
        prefill,
    ]


def linear_state_lines(inputs: PlanInputs) -> list[CostLine]:
    """The linear-attention layers' state (Qwen3.5), held beside the KV cache while the request
    decodes: the same bytes at any length (none for a model without such layers)."""
    size = inputs.llm.linear_state_bytes
    if not size:
        return []
    note = "conv + recurrent state of the linear-attention layers, fixed per request"
    return [CostLine("linear-attention state", size, note, CostKind.KV_CACHE)]


def static_kv_lines(inputs: PlanInputs, visual: int, text: int, new: int) -> list[CostLine]:
    """The static cache at its bucket's length, and the prefill's own KV copied into it.

    The prefill still fills a growing cache of the prompt (visual + text tokens), which is
    copied into the static one before the first step; no step copies a layer any more.
    """
    per_token, per_kib = inputs.kv_bytes_per_token, inputs.kv_bytes_per_token / KIB
    length = length_bucket(visual + text + new)
    return [
        CostLine(
            "static KV cache",
            per_token * length,
            f"{length} positions, the bucket of {visual} visual + {text} prompt + {new} new"
            f" tokens x {per_kib:.1f} KiB ({inputs.kv_dtype}), allocated whole and kept",
            CostKind.STATIC_KV_CACHE,
        ),
        CostLine(
            "KV cache",
            per_token * (visual + text),
            f"the prefill's, {visual} visual + {text} prompt tokens, copied into the static one",
            CostKind.KV_CACHE,
        ),
    ]


def _prefill_note(device: DeviceFacts, tokens: int) -> str:
    if device.measured is not None:
        return f"measured by profile calibrate, {tokens} tokens"
    return f"modelled, {tokens} tokens x{device.prefill_factors[0]:g} allocator"
