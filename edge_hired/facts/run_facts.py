"""Plan one request on the machine at hand: the facts `run` and `bench` know, then `plan_budget`.

`run_facts` (a checkpoint's config) and `bundle_run_facts` (a bundle's manifest) gather what is
known before any weights load: the model's `PlanInputs`, the device the request runs on, and the
request's shape (partitions and valid visual tokens of this image, a bound on the prompt's
tokens). `plan_for_run` plans those facts on a profile, its cap held to the memory free on that
device. `plan_for_pipeline` does the same for an already loaded `Pipeline`, given where it was
loaded from (`PlanSource`): a loaded pipeline does not keep its manifest or config.

No torch at import time: the device and config readers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.planner.arithmetic import Plan, plan_budget
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.planner.shapes import image_geometry
from edge_hired.profiles import ProfileError, load_profile
from edge_hired.units import SHORT_DTYPES

if TYPE_CHECKING:
    from edge_hired.runtime.pipeline import Pipeline

#: Tokens the chat template and special tokens may add around the prompt (Vicuna's system
#: prompt is ~40); the prompt itself is bounded by its UTF-8 bytes, since byte-level and
#: byte-fallback tokenizers never make more tokens than bytes.
TEMPLATE_TOKENS = 64
#: Where a pipeline's plan reads its model facts: a bundle's manifest or a checkpoint's config.
SOURCE_KINDS = ("bundle", "model")


@dataclass(frozen=True)
class RunFacts:
    """What `run` knows before loading weights: the model's facts and the request's shape."""

    inputs: PlanInputs
    device: str  # "cpu" or "cuda": where the request runs
    image_hw: tuple[int, int]
    partitions: int
    visual_tokens: int  # valid visual tokens of this image
    newline_rows: int  # image_newline tokens `--newline rows` may add at most
    prompt_tokens: int


@dataclass(frozen=True)
class PlanSource:
    """Where a pipeline was loaded from: a bundle directory, or a checkpoint (directory, hub id)."""

    kind: str  # "bundle" or "model"
    path: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            choices = " or ".join(SOURCE_KINDS)
            raise InvalidArgumentError(expected("plan source", choices, self.kind))
        if not isinstance(self.path, str) or not self.path.strip():
            raise InvalidArgumentError(expected(f"{self.kind} path", "non-empty text", self.path))


def run_facts(
    model: str,
    image_hw: tuple[int, int],
    prompt: str,
    device: str = "auto",
    dtype: str | None = None,
    prompt_tokens: int | None = None,
    quantization: str = "none",
) -> RunFacts:
    """Facts for planning `run --model` from the checkpoint's config (no weights are read).

    The LLM is counted as it will be loaded: in the run's dtype (fp32 on the CPU, fp16 on CUDA
    unless --dtype) and quantized by bitsandbytes at load when `quantization` says so.
    """
    from edge_hired.device.torch_device import choose_torch_device
    from edge_hired.runtime.loading import read_config

    if quantization == "8bit" and dtype is None:
        dtype = "fp16"  # as Pipeline.from_pretrained loads LLM.int8
    choice = choose_torch_device(device, dtype)
    inputs = inputs_from_config(read_config(model), quantization, str(choice.dtype))
    return _request_facts(inputs, choice.device.type, image_hw, prompt, prompt_tokens)


def bundle_run_facts(
    bundle: str | Path,
    image_hw: tuple[int, int],
    prompt: str,
    device: str = "auto",
    prompt_tokens: int | None = None,
) -> RunFacts:
    """Facts for planning `run --bundle` from its manifest (KV cache in its compute dtype)."""
    from edge_hired.bundle.manifest import read_manifest
    from edge_hired.device.torch_device import choose_torch_device

    manifest = read_manifest(Path(bundle).expanduser())
    choice = choose_torch_device(device, SHORT_DTYPES[manifest.llm.compute_dtype])
    inputs = PlanInputs.from_manifest(manifest)
    return _request_facts(inputs, choice.device.type, image_hw, prompt, prompt_tokens)


def _request_facts(
    inputs: PlanInputs,
    device: str,
    image_hw: tuple[int, int],
    prompt: str,
    prompt_tokens: int | None,
) -> RunFacts:
    """The request's shape: partitions and valid tokens of this image, prompt length bound.

    Without `prompt_tokens` the prompt is bounded by its UTF-8 bytes plus TEMPLATE_TOKENS.
    """
    geometry = image_geometry(inputs.vision, tuple(image_hw))
    tokens = prompt_tokens if prompt_tokens is not None else len(prompt.encode()) + TEMPLATE_TOKENS
    rows = len(geometry.rows_kept) if geometry.num_sub_images else 0
    return RunFacts(
        inputs,
        device,
        tuple(image_hw),
        geometry.num_partitions,
        int(geometry.valid_counts().sum()),
        rows,
        tokens,
    )


@dataclass(frozen=True)
class PlanLimits:
    """What limits a run's budget besides the image: memory cap, TTFT target, the desktop."""

    memory_cap_gib: float | None = None
    ttft_target_s: float | None = None
    headless: bool = False
    first_request: bool = False  # `run`: the process's only request, cold (see TTFT)


def run_request(
    facts: RunFacts, max_new_tokens: int, newline: str = "none", first_request: bool = False
) -> PlanRequest:
    """The planner's request for `run`'s facts: this image's geometry and a prompt bound."""
    return PlanRequest(
        first_request=first_request,
        prompt_tokens=facts.prompt_tokens,
        max_new_tokens=max_new_tokens,
        extra_tokens=facts.newline_rows if newline == "rows" else 0,
        partitions=facts.partitions,
        visual_tokens=facts.visual_tokens,
        image_hw=facts.image_hw,
        allocator=facts.device,
    )


def plan_for_run(
    facts: RunFacts,
    profile_name: str | None,
    memory_cap_gib: float | None,
    max_new_tokens: int,
    newline: str = "none",
    limits: PlanLimits | None = None,
) -> Plan:
    """The plan of one `run` request, its cap held to the memory free on the run's device.

    `limits` adds a TTFT target and the headless cap (serve and bench call this too);
    `memory_cap_gib` wins over `limits.memory_cap_gib` when both are given.
    """
    from edge_hired.facts.memory_cap import memory_cap

    limits = limits or PlanLimits()
    profile = load_profile(profile_name or _default_profile(facts.device))
    cap_gib = memory_cap_gib if memory_cap_gib is not None else limits.memory_cap_gib
    live = _live_kind(facts.device)
    cap = memory_cap(profile, cap_gib, live_kind=live, headless=limits.headless)
    request = run_request(facts, max_new_tokens, newline, limits.first_request)
    return plan_budget(facts.inputs, profile, request, cap, limits.ttft_target_s)


def pipeline_run_facts(
    pipeline: Pipeline, source: PlanSource, image_hw: tuple[int, int], prompt: str
) -> RunFacts:
    """RunFacts of a loaded pipeline: its source's manifest or config, its device and dtype."""
    device = pipeline.parts.device.type
    if source.kind == "bundle":
        return bundle_run_facts(source.path, image_hw, prompt, device)
    llm = pipeline.parts.llm
    dtype = llm.get_input_embeddings().weight.dtype  # quantized Linear weights are uint8/int8
    short = SHORT_DTYPES.get(str(dtype).removeprefix("torch."))
    return run_facts(source.path, image_hw, prompt, device, short, quantization=_loaded_quant(llm))


def _loaded_quant(llm: object) -> str:
    """How a loaded transformers model's weights are held: "4bit", "8bit" or "none"."""
    quantizer = getattr(llm, "hf_quantizer", None)
    settings = getattr(quantizer, "quantization_config", None) or llm
    if getattr(settings, "load_in_4bit", False) or getattr(llm, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(settings, "load_in_8bit", False) or getattr(llm, "is_loaded_in_8bit", False):
        return "8bit"
    return "none"


def plan_for_pipeline(
    pipeline: Pipeline,
    source: PlanSource,
    profile_name: str | None,
    image_hw: tuple[int, int],
    prompt: str,
    max_new_tokens: int,
    newline: str = "none",
    memory_cap_gib: float | None = None,
    limits: PlanLimits | None = None,
) -> Plan:
    """The plan of one request on a loaded pipeline, as `plan_for_run` makes it for `run`.

    `source` is where `pipeline` was loaded from (its facts are read there, no weights); the cap
    is held to the memory free on the pipeline's device plus what this process already holds.
    """
    facts = pipeline_run_facts(pipeline, source, image_hw, prompt)
    return plan_for_run(facts, profile_name, memory_cap_gib, max_new_tokens, newline, limits)


def _default_profile(device: str) -> str:
    """Without --profile: the detected Jetson, else the CPU (a discrete GPU needs --profile)."""
    from edge_hired.device.jetson import detect_jetson

    detected = detect_jetson().profile
    if detected:
        return detected
    if device == "cpu":
        return "cpu"
    raise ProfileError(
        "--memory-cap on a CUDA GPU: expected --profile NAME too (see `edge-hired profiles`)"
    )


def _live_kind(device: str) -> str:
    """Which memory the run draws from: host RAM on the CPU and on a Jetson, else the GPU's."""
    if device == "cpu":
        return "cpu"
    from edge_hired.device.jetson import detect_jetson

    return "unified" if detect_jetson().is_jetson else "discrete"
