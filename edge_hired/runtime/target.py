"""One resolved target per command: where and how the model runs, decided once, with reasons.

`resolve_target` is built at the command boundary from the flags (`TargetFlags`), the profile's
`[runtime]` section and what the model on disk says of itself (a bundle's manifest, a
checkpoint's config dtype). It is the only caller of the device chooser; the loaders
(`runtime.sources.load_target`, `Pipeline.from_pretrained`, `load_bundle_pipeline`) and the
planner's facts (`facts.run_facts.target_run_facts`) take the `Target` and never decide again.
Precedence everywhere: flag > profile `[runtime]` (when it is for this device) > default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from edge_hired.device.compute_dtype import SavedModel, choose_compute_dtype, cpu_has_bf16
from edge_hired.device.torch_device import DeviceChoice, choose_torch_device, cuda_has_bf16
from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.profiles import DeviceProfile, RuntimeSpec, load_profile
from edge_hired.runtime.compile_policy import decide_compile
from edge_hired.runtime.model_source import ModelSource
from edge_hired.runtime.settings import applicable_runtime, kv_cache_dtype
from edge_hired.units import check_quantization, normal_dtype


@dataclass(frozen=True)
class TargetFlags:
    """What the user asked for; None means unset (the profile, then the device decides)."""

    device: str = "auto"
    dtype: str | None = None  # fp32 / fp16 / bf16 (or full names)
    kv_dtype: str | None = None
    quantization: str | None = None  # none / 8bit / 4bit (checkpoints only)
    providers: tuple[str, ...] | None = None
    verify: bool = True
    profile: str | Path | DeviceProfile | None = None  # a name, a .toml path, or loaded
    memory_cap_gib: float | None = None
    ttft_target_s: float | None = None
    headless: bool = False
    compile: str = "auto"  # auto / on / off: the decode step (issue 19)


@dataclass(frozen=True)
class Target:
    """The resolved run: device, dtypes, quantization, providers, profile, limits, reasons."""

    source: ModelSource
    device: torch.device
    compute_dtype: str  # full name: float32 / float16 / bfloat16
    kv_dtype: str
    quantization: str
    providers: tuple[str, ...] | None  # None: ONNX Runtime's best available at load
    verify: bool
    profile: DeviceProfile | None
    memory_cap_gib: float | None
    ttft_target_s: float | None
    headless: bool
    reasons: tuple[str, ...]  # device, dtype, quantization: what the user sees
    notes: tuple[str, ...] = ()  # how the profile applied
    warnings: tuple[str, ...] = ()
    compile_decode: bool = False  # static KV cache + compiled decode step (`--compile`)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype as torch's."""
        return getattr(torch, self.compute_dtype)

    @property
    def reason(self) -> str:
        """The reasons on one line."""
        return "; ".join(self.reasons)

    @property
    def wants_plan(self) -> bool:
        """Whether a memory plan applies (a profile, a memory cap or a TTFT target)."""
        return any(v is not None for v in (self.profile, self.memory_cap_gib, self.ttft_target_s))


class DeviceProbe(Protocol):
    """The device's answers the target needs; tests give a fake GPU."""

    def choose(self, requested: str) -> DeviceChoice: ...

    def bf16(self, device: torch.device) -> bool: ...


class TorchProbe:
    """The real device, as torch and /proc/cpuinfo see it."""

    def choose(self, requested: str) -> DeviceChoice:
        return choose_torch_device(requested)

    def bf16(self, device: torch.device) -> bool:
        return cpu_has_bf16() if device.type == "cpu" else cuda_has_bf16(device)


class ProfileProbe:
    """The profile's device, not this machine's: `plan` plans for a device it need not run on."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile

    def choose(self, requested: str) -> DeviceChoice:
        kind = self.profile.runtime.device if requested == "auto" else requested
        why = f"{kind}: planned for profile {self.profile.name}"
        return DeviceChoice(torch.device(kind), why)

    def bf16(self, device: torch.device) -> bool:
        return cpu_has_bf16() if device.type == "cpu" else bool(self.profile.runtime.bf16)


def resolve_target(
    flags: TargetFlags, source: ModelSource, probe: DeviceProbe | None = None
) -> Target:
    """The one decision of device, dtypes, quantization and providers for `source`."""
    probe = probe or TorchProbe()
    profile = _profile(flags.profile)
    choice = probe.choose(flags.device)
    runtime, notes = applicable_runtime(profile, choice.device.type)
    quantization = _quantization(flags.quantization, runtime, source)
    saved = saved_model(source, quantization)
    bf16 = runtime.bf16 if runtime and runtime.bf16 is not None else probe.bf16(choice.device)
    default = runtime.compute_dtype if runtime else None
    requested = normal_dtype(flags.dtype) if flags.dtype else None
    dtype = choose_compute_dtype(choice.device.type, saved, requested, default, bf16)
    kv_requested = normal_dtype(flags.kv_dtype) if flags.kv_dtype else None
    kv, kv_notes = kv_cache_dtype(kv_requested, dtype.dtype, runtime)
    providers = flags.providers or (runtime.providers if runtime else None)
    quant_reason = f"LLM {quantization}" + (" (bitsandbytes at load)" if _at_load(saved) else "")
    unified = _unified_memory(profile, choice.device)
    compiled, compile_note = decide_compile(
        flags.compile, choice.device.type, unified, _linear_attention(source)
    )
    return Target(
        source=source,
        device=choice.device,
        compute_dtype=dtype.dtype,
        kv_dtype=kv,
        quantization=quantization,
        providers=providers,
        verify=flags.verify,
        profile=profile,
        memory_cap_gib=flags.memory_cap_gib,
        ttft_target_s=flags.ttft_target_s,
        headless=flags.headless,
        reasons=(choice.reason, dtype.reason, quant_reason),
        notes=(*notes, *_profile_notes(profile, runtime, flags), *kv_notes)
        + ((compile_note,) if compiled or flags.compile != "auto" else ()),
        warnings=(dtype.warning,) if dtype.warning else (),
        compile_decode=compiled,
    )


def _linear_attention(source: ModelSource) -> bool:
    """Whether the checkpoint's decoder has linear-attention layers (Qwen3.5)."""
    if source.kind != "model":
        return False
    from edge_hired.runtime.loading import read_config

    config = read_config(source.path)
    text = config.get_text_config(decoder=True)
    return "linear_attention" in (getattr(text, "layer_types", None) or ())


def _unified_memory(profile: DeviceProfile | None, device: torch.device) -> bool:
    """Whether a CUDA device shares the host's memory: the profile says so, else a Jetson."""
    if device.type != "cuda":
        return False
    if profile is not None:
        return bool(profile.memory.unified)
    from edge_hired.device.jetson import detect_jetson

    return detect_jetson().is_jetson


def _profile(given: str | Path | DeviceProfile | None) -> DeviceProfile | None:
    """The profile object: loaded once here, by name or by file."""
    if given is None or isinstance(given, DeviceProfile):
        return given
    return load_profile(given)


def _quantization(flag: str | None, runtime: RuntimeSpec | None, source: ModelSource) -> str:
    """A checkpoint's: flag > profile > none. A bundle's is fixed at export (read later)."""
    if source.kind == "bundle":
        if flag not in (None, "none"):
            raise InvalidArgumentError(
                expected("quantization with a bundle", "none (fixed at export)", flag)
            )
        return _manifest(source).llm.quantization
    return check_quantization(flag or (runtime.quantization if runtime else "none"))


def _at_load(saved: SavedModel) -> bool:
    return not saved.bundle and saved.quantization != "none"


def saved_model(source: ModelSource, quantization: str) -> SavedModel:
    """What the files say: a bundle's exported dtype, a checkpoint's config dtype."""
    if source.kind == "bundle":
        llm = _manifest(source).llm
        return SavedModel(normal_dtype(llm.compute_dtype), llm.quantization, bundle=True)
    from edge_hired.runtime.loading import read_config

    return SavedModel(config_dtype(read_config(source.path)), quantization)


def config_dtype(config: object) -> str:
    """The dtype a checkpoint was saved in (`dtype` / `torch_dtype`, top level or text config)."""
    for holder in (config, getattr(config, "text_config", None)):
        for key in ("dtype", "torch_dtype"):
            value = getattr(holder, key, None)
            if value is not None:
                try:
                    return normal_dtype(str(value))
                except InvalidArgumentError:
                    continue  # "auto" or an unknown name: not a statement of the dtype
    return "float32"


def _manifest(source: ModelSource):
    from edge_hired.bundle.manifest import read_manifest

    return read_manifest(Path(source.path).expanduser())


def _profile_notes(
    profile: DeviceProfile | None, runtime: RuntimeSpec | None, flags: TargetFlags
) -> tuple[str, ...]:
    """Which of the profile's runtime defaults this run took."""
    if profile is None or runtime is None:
        return ()
    taken = [
        name
        for name, flag in (
            ("providers", flags.providers),
            ("dtype", flags.dtype),
            ("quantization", flags.quantization),
        )
        if flag is None
    ]
    told = ", ".join(taken) if taken else "none (flags override all)"
    return (f"profile {profile.name}: runtime defaults for {told}",)
