"""Plan one request on the machine at hand: the facts `run` and `bench` know, then `plan_budget`.

`target_run_facts` gathers, before any weights load, what the resolved target
(`edge_hired.runtime.target.Target`) will load: the model's `PlanInputs` counted in the target's
compute dtype and quantization (a bundle's manifest or a checkpoint's config), the device, and
the request's shape (partitions and valid visual tokens of this image, a bound on the prompt's
tokens). `pipeline_run_facts` does the same for a loaded `Pipeline` from what it recorded it
loaded (`Pipeline.loaded`), never from a guess. `plan_for_run` plans facts on a profile, its cap
held to the memory free on that device. `run_facts` / `bundle_run_facts` are the library calls
that resolve a target from loose arguments first.

No torch at import time: the device and config readers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge_hired.errors import BudgetError
from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.planner.arithmetic import Plan, plan_budget
from edge_hired.planner.costs import holds_arena
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.planner.shapes import image_geometry
from edge_hired.profiles import DeviceProfile, ProfileError, load_profile
from edge_hired.runtime.model_source import ModelSource
from edge_hired.units import dtype_bytes, normal_dtype

if TYPE_CHECKING:
    from edge_hired.bundle.manifest import Manifest
    from edge_hired.runtime.pipeline import Pipeline
    from edge_hired.runtime.target import Target

#: Tokens the chat template and special tokens may add around the prompt (Vicuna's system
#: prompt is ~40); the prompt itself is bounded by its UTF-8 bytes, since byte-level and
#: byte-fallback tokenizers never make more tokens than bytes.
TEMPLATE_TOKENS = 64
#: Where a pipeline's plan reads its model facts (the name bench and older callers use).
PlanSource = ModelSource


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
    encoder_held: bool = False  # ONNX Runtime on a GPU provider: its arena is never returned
    static_kv_cache: bool = False  # `--compile`: decode on a bucket-sized static KV cache


def target_inputs(target: Target) -> PlanInputs:
    """The model's facts as `target` will load it: its dtype, KV dtype and quantization."""
    if target.source.kind == "bundle":
        return _bundle_inputs(target.source.path, target.compute_dtype)
    from edge_hired.runtime.loading import read_config

    config = read_config(target.source.path)
    return inputs_from_config(config, target.quantization, target.compute_dtype, target.kv_dtype)


def target_run_facts(
    target: Target, image_hw: tuple[int, int], prompt: str, prompt_tokens: int | None = None
) -> RunFacts:
    """Facts for planning what `target` will load (no weights are read)."""
    inputs = target_inputs(target)
    facts = _request_facts(inputs, target.device.type, image_hw, prompt, prompt_tokens)
    held = _arena_held_before_load(target)
    return replace(facts, encoder_held=held, static_kv_cache=target.compile_decode)


def _arena_held_before_load(target: Target) -> bool:
    """Whether the bundle's encoder will run on an ONNX Runtime GPU provider (arena held)."""
    if target.source.kind != "bundle":
        return False
    from edge_hired.device.providers import leading_provider

    return holds_arena(leading_provider(target.providers))


def run_facts(
    model: str,
    image_hw: tuple[int, int],
    prompt: str,
    device: str = "auto",
    dtype: str | None = None,
    prompt_tokens: int | None = None,
    quantization: str = "none",
) -> RunFacts:
    """Facts for planning `run --model` from the checkpoint's config (no weights are read)."""
    from edge_hired.runtime.target import TargetFlags, resolve_target

    flags = TargetFlags(device, dtype, quantization=quantization)
    target = resolve_target(flags, ModelSource("model", str(model)))
    return target_run_facts(target, image_hw, prompt, prompt_tokens)


def bundle_run_facts(
    bundle: str | Path,
    image_hw: tuple[int, int],
    prompt: str,
    device: str = "auto",
    prompt_tokens: int | None = None,
) -> RunFacts:
    """Facts for planning `run --bundle`: its manifest, counted in the dtype it will load in."""
    from edge_hired.runtime.target import TargetFlags, resolve_target

    target = resolve_target(TargetFlags(device), ModelSource("bundle", str(bundle)))
    return target_run_facts(target, image_hw, prompt, prompt_tokens)


def _bundle_inputs(
    bundle: str | Path, dtype: str, llm_bytes: int | None = None, projector: int | None = None
) -> PlanInputs:
    """A manifest's facts with the LLM and projector counted as loaded in `dtype`.

    The manifest records the exported files; an unquantized LLM loaded in another dtype (an fp16
    bundle computing in bf16 or fp32 on a CPU) holds its elements at that dtype's size, counted
    from the safetensors headers. `llm_bytes` / `projector` (measured by the loader) replace
    the counts.
    """
    from edge_hired.bundle.manifest import read_manifest

    root = Path(bundle).expanduser()
    manifest = read_manifest(root)
    inputs = PlanInputs.from_manifest(manifest, dtype)
    counted = _loaded_bytes(root, manifest, dtype)
    llm_bytes = counted[0] if llm_bytes is None else llm_bytes
    projector = counted[1] if projector is None else projector
    return replace(
        inputs,
        compute_dtype=dtype,
        llm_weight_bytes=llm_bytes,
        encoder_weight_bytes=manifest.vision.encoder_bytes + projector,
        notes=(*inputs.notes, f"LLM and projector counted as loaded, in {dtype}"),
    )


def _loaded_bytes(root: Path, manifest: Manifest, dtype: str) -> tuple[int, int]:
    """(LLM, projector) bytes once loaded in `dtype`.

    In the exported dtype, or quantized (which loads only as stored), the manifest's bytes;
    cast to another, the tensors' elements (from the safetensors headers) at its size.
    """
    llm = manifest.llm
    if dtype == normal_dtype(llm.compute_dtype) or llm.quantization != "none":
        return llm.weight_bytes, llm.projector_bytes
    from edge_hired.bundle.layout import LLM_DIR, PROJECTOR_FILE
    from edge_hired.runtime.language_model import stored_elements, weight_files

    size = dtype_bytes(dtype)
    projector = stored_elements([root / PROJECTOR_FILE], "projector.") * size
    return stored_elements(weight_files(root / LLM_DIR)) * size, projector


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
    rows = len(getattr(geometry, "rows_kept", ())) if geometry.num_sub_images else 0  # tiles: none
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
        encoder_held=facts.encoder_held,
        static_kv_cache=facts.static_kv_cache,
    )


def plan_for_run(
    facts: RunFacts,
    profile_name: str | Path | DeviceProfile | None,
    memory_cap_gib: float | None,
    max_new_tokens: int,
    newline: str = "none",
    limits: PlanLimits | None = None,
) -> Plan:
    """The plan of one `run` request, its cap held to the memory free on the run's device.

    `profile_name` is a loaded profile, a name or a .toml path (None: the detected Jetson, else
    cpu). `limits` adds a TTFT target and the headless cap (serve and bench call this too);
    `memory_cap_gib` wins over `limits.memory_cap_gib` when both are given.
    """
    from edge_hired.facts.memory_cap import memory_cap

    limits = limits or PlanLimits()
    profile = plan_profile(profile_name, facts.device)
    cap_gib = memory_cap_gib if memory_cap_gib is not None else limits.memory_cap_gib
    live = _live_kind(facts.device)
    cap = memory_cap(profile, cap_gib, live_kind=live, headless=limits.headless)
    request = run_request(facts, max_new_tokens, newline, limits.first_request)
    return plan_budget(facts.inputs, profile, request, cap, limits.ttft_target_s)


def plan_for_target(
    target: Target, facts: RunFacts, max_new_tokens: int, newline: str, first_request: bool
) -> Plan:
    """The plan of one request on the target's profile, under its memory cap and limits."""
    limits = PlanLimits(target.memory_cap_gib, target.ttft_target_s, target.headless, first_request)
    return plan_for_run(facts, target.profile, None, max_new_tokens, newline, limits)


def check_full_fits(strategy: str, visual_tokens: int, cap: int | None, flag: str) -> None:
    """Refuse `full` (which ignores caps) when the memory plan fits fewer tokens than the image has.

    `flag` names the setting in the message (`--strategy`, `hired.strategy`).
    """
    if strategy == "full" and cap is not None and cap < visual_tokens:
        raise BudgetError(
            f"{flag} full keeps all {visual_tokens} visual tokens, but the memory plan fits "
            f"{cap}: choose a dropping strategy (e.g. hired) or a larger memory cap"
        )


def plan_profile(given: str | Path | DeviceProfile | None, device: str) -> DeviceProfile:
    """The profile object: as given, loaded by name or path, or the default for the device."""
    if isinstance(given, DeviceProfile):
        return given
    return load_profile(given or _default_profile(device))


def pipeline_run_facts(
    pipeline: Pipeline, source: ModelSource, image_hw: tuple[int, int], prompt: str
) -> RunFacts:
    """RunFacts of a loaded pipeline: its source's manifest or config, counted as it was loaded.

    The dtype, quantization and (for bundles) the bytes are what the loader recorded it loaded
    (`Pipeline.loaded`), never guessed from the modules.
    """
    loaded = pipeline.loaded
    if source.kind == "bundle":
        inputs = _bundle_inputs(
            source.path, loaded.compute_dtype, loaded.llm_weight_bytes, loaded.projector_bytes
        )
    else:
        from edge_hired.runtime.loading import read_config

        config = read_config(source.path)
        inputs = inputs_from_config(config, loaded.quantization, loaded.compute_dtype)
    facts = _request_facts(inputs, pipeline.device.type, image_hw, prompt, None)
    static = pipeline.static_decoder is not None
    return replace(
        facts, encoder_held=holds_arena(pipeline.encoder_provider), static_kv_cache=static
    )


def plan_for_pipeline(
    pipeline: Pipeline,
    source: PlanSource,
    profile_name: str | Path | DeviceProfile | None,
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
