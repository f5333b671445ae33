"""The memory planner: a device profile and a model's facts in, the largest visual-token budget out.

Arithmetic, with no torch at import time; only `run_plan` reads files and devices (the
profile, a manifest or config, the memory free now), inside its functions. The predicted peak
of one request is

    runtime + CUDA context + LLM weights + encoder weights + image preprocessing
    + encoder activations (all partitions) + dequantisation buffer
    + KV bytes per token x (visual + prompt + new tokens) + prefill activations x (visual + prompt)
    + margin,

where KV bytes per token = 2 x layers x KV heads x head dim x dtype bytes. Everything but the
visual-token count is fixed for a request, so the budget is the largest count whose peak plus
margin fits under the cap. Each figure is either read (manifest, profile) or modelled; the plan
says which in its reasons.

Modules, each with one job:
- `units`: byte units, dtype names and sizes.
- `shapes`: the language model's and vision encoder's shapes, image layouts.
- `inputs`: `PlanInputs` (from a bundle manifest or a config) and `PlanRequest`.
- `costs`: the memory model, measured figures and one cost line per component.
- `arithmetic`: peak, margin, the largest fit, and `plan_budget`.
- `estimates`: roofline TTFT and decode rate.
- `run_plan`: the facts of one request on this machine (`RunFacts`, from a config, a manifest or
  a loaded pipeline) and its plan, the cap held to the memory free now (`plan_for_run`,
  `plan_for_pipeline`).
"""

from edge_hired.budget.arithmetic import (
    MARGIN_FRACTION,
    MARGIN_MIN_BYTES,
    MemoryCap,
    Plan,
    PlanError,
    largest_fit,
    margin_bytes,
    plan_budget,
    predict_lines,
    predicted_peak_bytes,
    required_bytes,
    spread_bytes,
)
from edge_hired.budget.costs import (
    ALLOCATOR_FACTORS,
    DECODED_BYTES_PER_PIXEL,
    DEFAULT_IMAGE_HW,
    ENCODER_LIVE,
    HALF_NORM_EXTRA,
    PIXEL_VALUE_COPIES,
    PREFILL_LIVE,
    PREPROCESS_BYTES_PER_PIXEL,
    RUNTIME_HOST_BYTES,
    CostLine,
    encoder_live_bytes_per_partition,
    image_bytes,
    prefill_live_bytes_per_token,
)
from edge_hired.budget.estimates import (
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    Estimates,
    estimate_speed,
)
from edge_hired.budget.inputs import (
    ONNX_RUNTIME_BYTES,
    QUANTIZATIONS,
    PlanInputs,
    PlanRequest,
    parameter_bytes,
)
from edge_hired.budget.run_plan import (
    TEMPLATE_TOKENS,
    PlanSource,
    RunFacts,
    bundle_run_facts,
    pipeline_run_facts,
    plan_for_pipeline,
    plan_for_run,
    run_facts,
)
from edge_hired.budget.shapes import LlmShape, VisionShape, image_geometry, max_geometry
from edge_hired.budget.units import (
    DTYPE_ALIASES,
    DTYPE_BYTES,
    GIB,
    KIB,
    MIB,
    dtype_bytes,
    gib,
    normal_dtype,
)

__all__ = [
    "ALLOCATOR_FACTORS",
    "BANDWIDTH_EFFICIENCY",
    "COMPUTE_EFFICIENCY",
    "DECODED_BYTES_PER_PIXEL",
    "DEFAULT_IMAGE_HW",
    "DTYPE_ALIASES",
    "DTYPE_BYTES",
    "ENCODER_LIVE",
    "GIB",
    "HALF_NORM_EXTRA",
    "KIB",
    "MARGIN_FRACTION",
    "MARGIN_MIN_BYTES",
    "MIB",
    "ONNX_RUNTIME_BYTES",
    "PIXEL_VALUE_COPIES",
    "PREFILL_LIVE",
    "PREPROCESS_BYTES_PER_PIXEL",
    "QUANTIZATIONS",
    "RUNTIME_HOST_BYTES",
    "TEMPLATE_TOKENS",
    "CostLine",
    "Estimates",
    "LlmShape",
    "MemoryCap",
    "Plan",
    "PlanError",
    "PlanInputs",
    "PlanRequest",
    "PlanSource",
    "RunFacts",
    "VisionShape",
    "bundle_run_facts",
    "dtype_bytes",
    "encoder_live_bytes_per_partition",
    "estimate_speed",
    "gib",
    "image_bytes",
    "image_geometry",
    "largest_fit",
    "margin_bytes",
    "max_geometry",
    "normal_dtype",
    "parameter_bytes",
    "pipeline_run_facts",
    "plan_budget",
    "plan_for_pipeline",
    "plan_for_run",
    "predict_lines",
    "predicted_peak_bytes",
    "prefill_live_bytes_per_token",
    "required_bytes",
    "run_facts",
    "spread_bytes",
]
