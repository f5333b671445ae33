"""A device profile's `[runtime]` section, as it applies to one run (flags first, then the profile).

A profile describes one device kind, so its runtime section applies only when the run is on that
kind (`device = "cuda"` profiles are not applied to a CPU run, which says so). The target builder
(`edge_hired.runtime.target`) reads the result; nothing else applies a profile's runtime section.
"""

from __future__ import annotations

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.profiles import DeviceProfile, RuntimeSpec


def applicable_runtime(
    profile: DeviceProfile | None, device_type: str
) -> tuple[RuntimeSpec | None, tuple[str, ...]]:
    """The profile's runtime section if it is for `device_type`, with a note when it is not."""
    if profile is None:
        return None, ()
    runtime = profile.runtime
    if runtime.device != device_type:
        note = (
            f"profile {profile.name} is for {runtime.device}, this run is on {device_type}: "
            "its runtime defaults are not applied"
        )
        return None, (note,)
    return runtime, ()


def kv_cache_dtype(
    requested: str | None, compute: str, runtime: RuntimeSpec | None
) -> tuple[str, tuple[str, ...]]:
    """The KV cache's dtype: the compute dtype, since transformers holds K/V in the model's.

    A `--kv-dtype` unlike it is refused; a profile's unlike it is noted and not applied.
    """
    if requested is not None and requested != compute:
        raise InvalidArgumentError(
            expected(
                "KV-cache dtype",
                f"the compute dtype {compute} (the cache is held in it)",
                requested,
            )
        )
    if runtime is not None and runtime.kv_cache_dtype != compute:
        note = (
            f"KV cache in {compute}, the compute dtype (the profile's {runtime.kv_cache_dtype} "
            "applies to a run computing in it)"
        )
        return compute, (note,)
    return compute, ()
