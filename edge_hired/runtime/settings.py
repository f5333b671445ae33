"""A device profile's `[runtime]` section, applied to a run: flags first, then the profile.

`run`, `bench` and `eval` with `--profile` take the profile's providers, compute dtype, KV-cache
dtype and default quantization for whatever their flags leave unset. A profile describes one
device kind, so its runtime section applies only when the run is on that kind (`device =
"cuda"` profiles are not applied to a CPU run, which says so). A bundle fixes its quantization
and dtype at export; only an explicit `--dtype` changes the latter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.profiles import RuntimeSpec
from edge_hired.units import SHORT_DTYPES


@dataclass(frozen=True)
class RuntimeSettings:
    """Runtime choices of one run; None / unset means "the device decides"."""

    providers: tuple[str, ...] | None = None
    dtype: str | None = None  # fp32 / fp16 / bf16
    kv_dtype: str | None = None
    quantization: str | None = None  # none / 8bit / 4bit (checkpoints only)
    notes: tuple[str, ...] = ()


def apply_profile(
    given: RuntimeSettings,
    runtime: RuntimeSpec | None,
    profile_name: str,
    device_type: str,
    bundle: bool,
) -> RuntimeSettings:
    """`given` (the flags) with its unset fields filled from the profile's runtime section."""
    if runtime is None:
        return check_kv_dtype(given)
    if runtime.device != device_type:
        note = (
            f"profile {profile_name} is for {runtime.device}, this run is on {device_type}: "
            "its runtime defaults are not applied"
        )
        return check_kv_dtype(replace(given, notes=(*given.notes, note)))
    filled = RuntimeSettings(
        providers=given.providers or runtime.providers,
        dtype=given.dtype or (None if bundle else SHORT_DTYPES[runtime.compute_dtype]),
        kv_dtype=given.kv_dtype or SHORT_DTYPES[runtime.kv_cache_dtype],
        quantization=given.quantization or (None if bundle else runtime.quantization),
    )
    taken = [
        f"{name} {getattr(filled, name)}"
        for name in ("providers", "dtype", "kv_dtype", "quantization")
        if getattr(given, name) is None and getattr(filled, name) is not None
    ]
    note = f"profile {profile_name}: " + (", ".join(taken) if taken else "flags override all")
    return check_kv_dtype(replace(filled, notes=(*given.notes, note)))


def check_kv_dtype(settings: RuntimeSettings) -> RuntimeSettings:
    """Refuse a KV-cache dtype the runtime cannot hold: transformers keeps K/V in the model's."""
    kv, dtype = settings.kv_dtype, settings.dtype
    if kv is not None and dtype is not None and kv != dtype:
        raise InvalidArgumentError(
            expected("KV-cache dtype", f"the compute dtype {dtype} (the cache is held in it)", kv)
        )
    return settings
