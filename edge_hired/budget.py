"""The memory planner: a device profile and a model's facts in, the largest visual-token budget out.

Pure arithmetic (no torch at import time). The predicted peak of one request is

    runtime + CUDA context + LLM weights + encoder weights + image preprocessing
    + encoder activations (all partitions) + dequantisation buffer
    + KV bytes per token x (visual + prompt + new tokens) + prefill activations x (visual + prompt)
    + margin,

where KV bytes per token = 2 x layers x KV heads x head dim x dtype bytes. Everything but the
visual-token count is fixed for a request, so the budget is the largest count whose peak plus
margin fits under the cap. Each figure is either read (manifest, profile) or modelled; the plan
says which in its reasons.

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

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edge_hired.errors import BudgetError, InvalidArgumentError, expected
from edge_hired.hired.geometry import ImageGeometry, anyres_geometry, single_geometry

if TYPE_CHECKING:
    from edge_hired.bundle.manifest import Manifest
    from edge_hired.profiles import DeviceProfile

GIB, MIB, KIB = 2**30, 2**20, 2**10
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
QUANTIZATIONS = ("none", "8bit", "4bit")

#: Measured: peak RSS of the tiny preset answering a one-token request on a 336x336 image, minus
#: the model's own modelled bytes (`scripts/plan_table.py --calibrate`: 362 and 359 MiB in two
#: sessions, medians of three processes each). Host memory only.
RUNTIME_HOST_BYTES = 360 * MIB
DECODED_BYTES_PER_PIXEL = 3
PREPROCESS_BYTES_PER_PIXEL = 10
PIXEL_VALUE_COPIES = 4
DEFAULT_IMAGE_HW = (1080, 1920)  # assumed when the plan is made without an image
#: ONNX Runtime in a bundle run, measured: `import onnxruntime` 18 MiB + an InferenceSession 10.
ONNX_RUNTIME_BYTES = 28 * MIB

ENCODER_LIVE = (3.0, 7.5)  # elements per token: x intermediate, x hidden
PREFILL_LIVE = (3.0, 5.5)
HALF_NORM_EXTRA = 2.0  # extra hidden-sized elements per token in fp16/bf16 (fp32 RMSNorm)
#: allocator -> stage -> (typical, worst) factor from the live set to the RSS / device peak.
#: The prediction uses the typical factor; the margin adds the difference to the worst.
ALLOCATOR_FACTORS = {
    "cpu": {"encoder": (1.4, 1.5), "prefill": (2.0, 3.1)},
    "cuda": {"encoder": (1.25, 1.25), "prefill": (1.5, 1.5)},  # estimates, not measured
}
MARGIN_FRACTION = 0.05
MARGIN_MIN_BYTES = 64 * MIB

#: Roofline estimates: shares of peak FLOPs and bandwidth assumed reachable.
COMPUTE_EFFICIENCY = 0.5
BANDWIDTH_EFFICIENCY = 0.7


class PlanError(BudgetError):
    """The cap cannot hold the fixed costs plus one visual token (short by `deficit_bytes`)."""

    def __init__(self, message: str, deficit_bytes: int) -> None:
        super().__init__(message)
        self.deficit_bytes = deficit_bytes


@dataclass(frozen=True)
class LlmShape:
    """What the planner needs of the language model's shape."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int

    def kv_bytes_per_token(self, dtype: str) -> int:
        """2 (keys and values) x layers x KV heads x head dim x dtype bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes(dtype)


@dataclass(frozen=True)
class VisionShape:
    """What the planner needs of the vision encoder and its image geometry."""

    layers_run: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    crop_size: int
    patch_size: int
    family: str  # "llava_next" or "llava"
    pinpoints: tuple[tuple[int, int], ...] = ()

    @property
    def tokens_per_partition(self) -> int:
        """Patch tokens plus the CLS token that the encoder carries."""
        return (self.crop_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class PlanInputs:
    """Model facts for planning: from a bundle manifest or from a config alone."""

    source: str
    llm: LlmShape
    vision: VisionShape
    quantization: str
    compute_dtype: str
    kv_dtype: str
    llm_weight_bytes: int
    encoder_weight_bytes: int
    llm_matmul_params: int  # for the FLOP estimate
    vision_matmul_params: int
    largest_quantized_linear: int = 0  # params; dequantised to compute dtype one at a time
    measured_encoder_bytes_per_partition: int | None = None
    notes: tuple[str, ...] = ()
    vision_dtype: str = "float32"  # dtype of the encoder's activations
    onnx_runtime_bytes: int = 0  # host memory of ONNX Runtime when the encoder runs in it

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes each token adds."""
        return self.llm.kv_bytes_per_token(self.kv_dtype)

    def with_kv_dtype(self, kv_dtype: str | None) -> PlanInputs:
        """The same facts with the KV cache in another dtype (None keeps it)."""
        return self if kv_dtype is None else replace(self, kv_dtype=normal_dtype(kv_dtype))

    def max_geometry(self) -> tuple[int, int]:
        """(partitions, visual tokens) of the model's largest image layout."""
        return max_geometry(self.vision)

    @classmethod
    def from_manifest(cls, manifest: Manifest, kv_dtype: str | None = None) -> PlanInputs:
        """Facts recorded by the exporter; shapes it does not record are assumed (see notes)."""
        return _inputs_from_manifest(manifest, kv_dtype)

    @classmethod
    def from_config(
        cls, config: Any, quantization: str, compute_dtype: str, kv_dtype: str | None = None
    ) -> PlanInputs:
        """Facts of a transformers LLaVA config, weights counted on the meta device.

        Weight bytes assume bitsandbytes as transformers configures it by default: the Linear
        layers of the language model are quantised (4bit: NF4, 0.5 B/param plus one fp32 absmax
        per 64-value block, no double quantisation; 8bit: 1 B/param plus one fp32 scale per output
        row); embeddings, norms, lm_head, the vision tower and the projector stay in the compute
        dtype. Buffers (rotary tables, position ids) are left out: a few KiB.
        """
        return _inputs_from_config(config, quantization, compute_dtype, kv_dtype)


@dataclass(frozen=True)
class PlanRequest:
    """What one request adds: tokens around the image, and the image itself."""

    prompt_tokens: int = 64
    max_new_tokens: int = 64
    extra_tokens: int = 0  # fixed extra LLM positions, e.g. image_newline tokens
    partitions: int | None = None  # None: the model's largest layout
    visual_tokens: int | None = None  # valid visual tokens of the image; None: the largest
    image_hw: tuple[int, int] | None = None  # None: DEFAULT_IMAGE_HW
    allocator: str | None = None  # "cpu" or "cuda"; None: the profile's device


@dataclass(frozen=True)
class MemoryCap:
    """The memory a request may use, and where that figure comes from."""

    bytes: int
    reason: str


@dataclass(frozen=True)
class CostLine:
    """One line of the peak-memory breakdown."""

    name: str
    bytes: int
    note: str


@dataclass(frozen=True)
class Estimates:
    """Roofline estimates from the profile's peak figures, not measurements."""

    ttft_s: float
    decode_tokens_per_s: float
    note: str


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


# --- dtype and geometry helpers ---------------------------------------------------------------


def normal_dtype(name: str) -> str:
    """'float16' for 'float16' / 'fp16' / 'torch.float16', else InvalidArgumentError."""
    text = str(name).removeprefix("torch.")
    text = DTYPE_ALIASES.get(text, text)
    if text not in DTYPE_BYTES:
        raise InvalidArgumentError(expected("dtype", "float32, float16 or bfloat16", name))
    return text


def dtype_bytes(name: str) -> int:
    """Bytes of one element."""
    return DTYPE_BYTES[normal_dtype(name)]


def image_geometry(vision: VisionShape, image_hw: tuple[int, int]) -> ImageGeometry:
    """Token geometry of an image of (height, width) under the model's layout."""
    if vision.family == "llava_next" and vision.pinpoints:
        return anyres_geometry(image_hw, vision.pinpoints, vision.crop_size, vision.patch_size)
    return single_geometry(image_hw, vision.crop_size, vision.patch_size)


def max_geometry(vision: VisionShape) -> tuple[int, int]:
    """(partitions, valid visual tokens) of the largest layout: an image shaped like a pinpoint."""
    if vision.family != "llava_next" or not vision.pinpoints:
        single = single_geometry((vision.crop_size,) * 2, vision.crop_size, vision.patch_size)
        return 1, single.tokens_per_partition
    best = (0, 0)
    for pin in vision.pinpoints:
        geometry = anyres_geometry(pin, vision.pinpoints, vision.crop_size, vision.patch_size)
        best = max(best, (geometry.num_partitions, int(geometry.valid_counts().sum())))
    return best


# --- the arithmetic ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Device:
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


def _device(profile: DeviceProfile, allocator: str | None) -> _Device:
    """The profile's figures; host memory (runtime, image) counts only where it is shared."""
    memory = profile.memory
    kind = allocator or profile.runtime.device
    if kind not in ALLOCATOR_FACTORS:
        raise InvalidArgumentError(expected("allocator", " or ".join(ALLOCATOR_FACTORS), kind))
    measured = memory.runtime_gib is None
    runtime = RUNTIME_HOST_BYTES if measured else memory.runtime_gib * GIB
    note = "measured on the CPU build" if measured else "from the profile"
    return _Device(
        profile.name, memory.unified, int(runtime) if memory.unified else 0,
        f"Python, torch, transformers: {note}",
        int(memory.cuda_context_gib * GIB), ALLOCATOR_FACTORS[kind]["encoder"],
        ALLOCATOR_FACTORS[kind]["prefill"], kind,
        profile.performance.bandwidth_gb_s, profile.performance.fp16_tflops,
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


def _fixed_lines(inputs: PlanInputs, device: _Device, request: PlanRequest) -> list[CostLine]:
    """Costs that do not depend on the visual-token count."""
    partitions, _ = _request_geometry(inputs, request)
    hw = request.image_hw or DEFAULT_IMAGE_HW
    lines = [
        CostLine("runtime", device.runtime_bytes, device.runtime_note),
        CostLine("CUDA context", device.cuda_context_bytes, "from the profile"),
        CostLine("LLM weights", inputs.llm_weight_bytes,
                 f"{inputs.quantization}, {inputs.compute_dtype}"),
        CostLine("encoder weights", inputs.encoder_weight_bytes, "vision tower + projector"),
    ]
    if device.host_counts:
        lines.append(CostLine("ONNX Runtime", inputs.onnx_runtime_bytes, "bundle encoder runtime"))
        lines.append(CostLine("image", image_bytes(hw, partitions, inputs.vision.crop_size),
                              f"{hw[1]}x{hw[0]} px, {partitions} partitions"))
    lines.append(_encoder_line(inputs, device, partitions))
    if inputs.largest_quantized_linear:
        buffer = inputs.largest_quantized_linear * dtype_bytes(inputs.compute_dtype)
        lines.append(CostLine("dequant buffer", buffer, "largest quantised Linear, dequantised"))
    return [line for line in lines if line.bytes or "weights" in line.name]


def _encoder_line(inputs: PlanInputs, device: _Device, partitions: int) -> CostLine:
    measured = inputs.measured_encoder_bytes_per_partition
    if measured:
        return CostLine("encoder activations", measured * partitions,
                        f"measured at export, {partitions} partitions")
    live = encoder_live_bytes_per_partition(inputs) * partitions
    factor = device.encoder_factors[0]
    return CostLine("encoder activations", int(live * factor),
                    f"modelled, {partitions} partitions x{factor:g} allocator")


def _per_token(inputs: PlanInputs, device: _Device) -> tuple[float, float]:
    """(KV bytes incl. the decode-time copy of one layer, prefill activation bytes) per token."""
    kv = inputs.kv_bytes_per_token * (1 + 1 / inputs.llm.num_layers)
    return kv, prefill_live_bytes_per_token(inputs) * device.prefill_factors[0]


def _token_lines(
    inputs: PlanInputs, device: _Device, request: PlanRequest, visual: int
) -> list[CostLine]:
    """KV cache and prefill activations for `visual` visual tokens."""
    kv, act = _per_token(inputs, device)
    text = request.prompt_tokens + request.extra_tokens
    cached = visual + text + request.max_new_tokens
    per_kib = inputs.kv_bytes_per_token / KIB
    return [
        CostLine("KV cache", int(kv * cached),
                 f"{visual} visual + {text} prompt + {request.max_new_tokens} new tokens"
                 f" x {per_kib:.1f} KiB ({inputs.kv_dtype})"),
        CostLine("prefill activations", int(act * (visual + text)),
                 f"modelled, {visual + text} tokens x{device.prefill_factors[0]:g} allocator"),
    ]


def margin_bytes(peak: int, spread: int = 0) -> int:
    """Safety margin on top of a predicted peak: a share of it plus the allocator spread."""
    return max(MARGIN_MIN_BYTES, int(MARGIN_FRACTION * peak)) + spread


def spread_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """What the modelled activations may add above the prediction: worst minus typical factor."""
    device = _device(profile, request.allocator)
    partitions, _ = _request_geometry(inputs, request)
    encoder = 0.0
    if not inputs.measured_encoder_bytes_per_partition:
        extra = device.encoder_factors[1] - device.encoder_factors[0]
        encoder = encoder_live_bytes_per_partition(inputs) * partitions * extra
    tokens = visual_tokens + request.prompt_tokens + request.extra_tokens
    extra = device.prefill_factors[1] - device.prefill_factors[0]
    return int(encoder + prefill_live_bytes_per_token(inputs) * tokens * extra)


def required_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """Predicted peak plus margin: what must fit under the cap."""
    peak = predicted_peak_bytes(inputs, profile, request, visual_tokens)
    return peak + margin_bytes(peak, spread_bytes(inputs, profile, request, visual_tokens))


def predict_lines(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> list[CostLine]:
    """The breakdown of the predicted peak for a given visual-token count (no margin)."""
    device = _device(profile, request.allocator)
    fixed = _fixed_lines(inputs, device, request)
    return fixed + _token_lines(inputs, device, request, visual_tokens)


def predicted_peak_bytes(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, visual_tokens: int
) -> int:
    """Predicted peak of a request keeping `visual_tokens` (no margin)."""
    return sum(line.bytes for line in predict_lines(inputs, profile, request, visual_tokens))


def _request_geometry(inputs: PlanInputs, request: PlanRequest) -> tuple[int, int]:
    partitions, tokens = inputs.max_geometry()
    return request.partitions or partitions, (
        tokens if request.visual_tokens is None else request.visual_tokens
    )


def largest_fit(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap_bytes: int
) -> int:
    """Largest visual-token count (not capped by the image) whose peak + margin fits; 0 if none."""
    peak = [predicted_peak_bytes(inputs, profile, request, n) for n in (0, 1)]
    spread = [spread_bytes(inputs, profile, request, n) for n in (0, 1)]
    step, spread_step = peak[1] - peak[0], spread[1] - spread[0]
    by_share = (cap_bytes - spread[0] - peak[0] * (1 + MARGIN_FRACTION)) / (
        step * (1 + MARGIN_FRACTION) + spread_step)
    by_floor = (cap_bytes - MARGIN_MIN_BYTES - spread[0] - peak[0]) / (step + spread_step)
    count = max(0, math.floor(min(by_share, by_floor)))
    while count > 0 and required_bytes(inputs, profile, request, count) > cap_bytes:
        count -= 1  # the closed form is off by at most a token or two: rounding of the lines
    while required_bytes(inputs, profile, request, count + 1) <= cap_bytes:
        count += 1
    return count


def plan_budget(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: MemoryCap
) -> Plan:
    """The largest visual-token budget that fits under `cap`, with breakdown and reasons.

    Raises PlanError naming the deficit when not even one visual token fits.
    """
    _check_request(request)
    _, available = _request_geometry(inputs, request)
    fit = largest_fit(inputs, profile, request, cap.bytes)
    if fit < 1:
        need = required_bytes(inputs, profile, request, 1)
        raise PlanError(_deficit_message(inputs, profile, request, cap, need), need - cap.bytes)
    budget = min(fit, available)
    lines = predict_lines(inputs, profile, request, budget)
    peak = sum(line.bytes for line in lines)
    device = _device(profile, request.allocator)
    kv, act = _per_token(inputs, device)
    spread = spread_bytes(inputs, profile, request, budget)
    margin = CostLine("margin", margin_bytes(peak, spread),
                      f"{MARGIN_FRACTION:.0%} of the peak (at least 64 MiB) + allocator spread "
                      f"{spread / MIB:.0f} MiB")
    return Plan(
        profile=profile.name, source=inputs.source, cap=cap, budget_tokens=budget,
        visual_tokens_available=available, lines=(*lines, margin),
        peak_bytes=peak, required_bytes=peak + margin.bytes,
        bytes_per_visual_token=int(kv + act),
        reasons=_reasons(inputs, device, request, cap, budget, available, fit),
        estimates=estimate_speed(inputs, device, request, budget), request=request,
    )


def _check_request(request: PlanRequest) -> None:
    for name in ("prompt_tokens", "max_new_tokens", "extra_tokens"):
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgumentError(expected(name, "an integer >= 0", value))


def _deficit_message(
    inputs: PlanInputs, profile: DeviceProfile, request: PlanRequest, cap: MemoryCap, need: int
) -> str:
    """'<profile>: memory cap X GiB is Y GiB short of ...', naming the biggest fixed costs."""
    fixed = _fixed_lines(inputs, _device(profile, request.allocator), request)
    biggest = sorted(fixed, key=lambda line: -line.bytes)[:4]
    items = ", ".join(f"{line.name} {gib(line.bytes)}" for line in biggest)
    return (
        f"{profile.name}: memory cap {gib(cap.bytes)} GiB ({cap.reason}) is "
        f"{gib(need - cap.bytes)} GiB short of the fixed costs plus one visual token and margin "
        f"({gib(need)} GiB; largest: {items}); use a smaller quantization, a device with more "
        f"memory, or a larger --memory-cap"
    )


def gib(value: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{value / GIB:.2f}"


def _reasons(
    inputs: PlanInputs, device: _Device, request: PlanRequest, cap: MemoryCap,
    budget: int, available: int, fit: int,
) -> tuple[str, ...]:
    llm = inputs.llm
    kv = (f"KV cache: 2 x {llm.num_layers} layers x {llm.num_kv_heads} KV heads x "
          f"{llm.head_dim} head dim x {dtype_bytes(inputs.kv_dtype)} B ({inputs.kv_dtype}) = "
          f"{inputs.kv_bytes_per_token / KIB:.1f} KiB per token")
    reasons = [f"cap: {gib(cap.bytes)} GiB, {cap.reason}", kv, *inputs.notes]
    if not inputs.measured_encoder_bytes_per_partition:
        reasons.append("encoder activations: modelled (no measured figure recorded)")
    (enc, enc_worst), (pre, pre_worst) = device.encoder_factors, device.prefill_factors
    reasons.append(f"activations: live set x {enc:g} (encoder) and x {pre:g} (prefill) for the "
                   f"{device.allocator} allocator; the margin covers up to x {enc_worst:g} and "
                   f"x {pre_worst:g}")
    if request.image_hw is None or request.partitions is None:
        h, w = request.image_hw or DEFAULT_IMAGE_HW
        reasons.append(f"image: assumed {w}x{h} px in the model's largest layout")
    if fit >= available:
        reasons.append(f"budget: all {available} visual tokens fit "
                       f"(room for {fit - available} more)")
    else:
        reasons.append(f"budget: {budget} of {available} visual tokens fit under the cap")
    return tuple(reasons)


def estimate_speed(
    inputs: PlanInputs, device: _Device, request: PlanRequest, visual: int
) -> Estimates:
    """Roofline TTFT and decode rate from the profile's peak FLOPs and bandwidth."""
    partitions, _ = _request_geometry(inputs, request)
    tokens = visual + request.prompt_tokens + request.extra_tokens
    flops = _encoder_flops(inputs, partitions) + _prefill_flops(inputs, tokens)
    weights = inputs.llm_weight_bytes + inputs.encoder_weight_bytes
    compute = flops / (device.fp16_tflops * 1e12 * COMPUTE_EFFICIENCY)
    bandwidth = device.bandwidth_gb_s * 1e9 * BANDWIDTH_EFFICIENCY
    ttft = max(compute, weights / bandwidth)
    context = tokens + request.max_new_tokens / 2
    per_token = inputs.llm_weight_bytes + inputs.kv_bytes_per_token * context
    note = (f"estimates, not measurements: {COMPUTE_EFFICIENCY:.0%} of {device.fp16_tflops:g} "
            f"fp16 TFLOPS, {BANDWIDTH_EFFICIENCY:.0%} of {device.bandwidth_gb_s:g} GB/s")
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


# --- constructors of PlanInputs ---------------------------------------------------------------


def _inputs_from_manifest(manifest: Manifest, kv_dtype: str | None) -> PlanInputs:
    """PlanInputs from a bundle manifest (weights in bytes as exported)."""
    llm_spec, vision_spec = manifest.llm, manifest.vision
    llm = LlmShape(llm_spec.num_layers, llm_spec.hidden_size, llm_spec.intermediate_size,
                   llm_spec.hidden_size // llm_spec.head_dim, llm_spec.num_kv_heads,
                   llm_spec.head_dim, llm_spec.vocab_size)
    vision = VisionShape(
        vision_spec.layers_in_graph, vision_spec.hidden_size, 4 * vision_spec.hidden_size,
        vision_spec.num_heads, vision_spec.crop_size, vision_spec.patch_size, vision_spec.family,
        tuple((int(h), int(w)) for h, w in vision_spec.pinpoints),
    )
    quantized = llm_spec.quantization != "none"
    compute = normal_dtype(llm_spec.compute_dtype)
    return PlanInputs(
        source=f"bundle {manifest.source.get('model_id', '?')}", llm=llm, vision=vision,
        quantization=llm_spec.quantization, compute_dtype=compute,
        kv_dtype=normal_dtype(kv_dtype or compute), vision_dtype=normal_dtype(vision_spec.dtype),
        llm_weight_bytes=llm_spec.weight_bytes,
        encoder_weight_bytes=vision_spec.encoder_bytes + llm_spec.projector_bytes,
        llm_matmul_params=_llm_matmul_params(llm),
        vision_matmul_params=_vision_matmul_params(vision),
        largest_quantized_linear=llm.hidden_size * max(llm.intermediate_size, llm.hidden_size)
        if quantized else 0,
        measured_encoder_bytes_per_partition=vision_spec.activation_bytes_per_partition or None,
        notes=("bundle: vision MLP assumed 4 x hidden (CLIP), attention heads hidden / head dim",),
        onnx_runtime_bytes=ONNX_RUNTIME_BYTES,
    )


def _llm_matmul_params(llm: LlmShape) -> int:
    """Llama-style Linear parameters: q, k, v, o, gate, up, down per layer, plus lm_head."""
    attention = 2 * llm.hidden_size * llm.num_heads * llm.head_dim
    attention += 2 * llm.hidden_size * llm.num_kv_heads * llm.head_dim
    per_layer = attention + 3 * llm.hidden_size * llm.intermediate_size
    return llm.num_layers * per_layer + llm.hidden_size * llm.vocab_size


def _vision_matmul_params(vision: VisionShape) -> int:
    """CLIP Linear parameters of the layers that run."""
    hidden = vision.hidden_size
    return vision.layers_run * (4 * hidden * hidden + 2 * hidden * vision.intermediate_size)


def _inputs_from_config(
    config: Any, quantization: str, compute_dtype: str, kv_dtype: str | None
) -> PlanInputs:
    """PlanInputs from a transformers LlavaConfig / LlavaNextConfig (no weights needed)."""
    from edge_hired.runtime.loading import model_facts

    if quantization not in QUANTIZATIONS:
        raise InvalidArgumentError(expected("quantization", ", ".join(QUANTIZATIONS), quantization))
    compute = normal_dtype(compute_dtype)
    facts, text, tower = model_facts(config), config.text_config, config.vision_config
    heads = text.num_attention_heads
    llm = LlmShape(
        text.num_hidden_layers, text.hidden_size, text.intermediate_size, heads,
        getattr(text, "num_key_value_heads", None) or heads,
        getattr(text, "head_dim", None) or text.hidden_size // heads, text.vocab_size,
    )
    vision = VisionShape(
        facts.layers.layers_to_run, tower.hidden_size, tower.intermediate_size,
        tower.num_attention_heads, facts.crop_size, facts.patch_size, facts.family, facts.pinpoints,
    )
    weights = _count_weights(config, quantization, dtype_bytes(compute))
    return PlanInputs(
        source=f"config {facts.family} ({llm.num_layers}-layer LLM, {quantization}, {compute})",
        llm=llm, vision=vision, quantization=quantization, compute_dtype=compute,
        kv_dtype=normal_dtype(kv_dtype or compute), vision_dtype=compute,
        llm_weight_bytes=weights["llm"], encoder_weight_bytes=weights["encoder"],
        llm_matmul_params=weights["llm_matmul"],
        vision_matmul_params=weights["encoder_matmul"] * vision.layers_run
        // tower.num_hidden_layers,
        largest_quantized_linear=weights["largest"],
    )


def _count_weights(config: Any, quantization: str, size: int) -> dict[str, int]:
    """Bytes and Linear parameter counts of the LLM and encoder sides, on the meta device."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    language = model.model.language_model
    llm_side = {id(m) for m in language.modules()} | {id(m) for m in model.lm_head.modules()}
    linear = torch.nn.Linear
    quantized = set() if quantization == "none" else {
        id(m) for m in language.modules() if isinstance(m, linear)
    }
    totals = dict.fromkeys(("llm", "encoder", "llm_matmul", "encoder_matmul", "largest"), 0)
    seen: set[int] = set()
    for module in model.modules():
        side = "llm" if id(module) in llm_side else "encoder"
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue  # tied weights count once
            seen.add(id(param))
            is_weight = isinstance(module, linear) and name == "weight"
            scheme = quantization if is_weight and id(module) in quantized else "none"
            totals[side] += parameter_bytes(tuple(param.shape), scheme, size)
            totals[f"{side}_matmul"] += param.numel() if is_weight else 0
            if scheme != "none":
                totals["largest"] = max(totals["largest"], param.numel())
    return totals


def parameter_bytes(shape: tuple[int, ...], quantization: str, size: int) -> int:
    """Stored bytes of one parameter: plain, bitsandbytes NF4 (blocks of 64) or LLM.int8."""
    numel = math.prod(shape)
    if quantization == "4bit":
        return math.ceil(numel / 2) + math.ceil(numel / 64) * 4
    if quantization == "8bit":
        return numel + shape[0] * 4
    return numel * size
