"""The memory cap a plan fits under: `--memory-cap`, a profile's figure, or the memory free now.

Reads the live device through `edge_hired.device.memory_info`; the planner only gets the result.
"""

from __future__ import annotations

from pathlib import Path

from edge_hired.device.device_memory import process_bytes
from edge_hired.device.memory_info import MEMINFO, device_memory
from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.planner.arithmetic import MemoryCap
from edge_hired.profiles import DeviceProfile
from edge_hired.units import GIB, gib


def memory_cap(
    profile: DeviceProfile,
    override_gib: float | None = None,
    live_kind: str | None = None,
    meminfo: Path = MEMINFO,
    headless: bool = False,
) -> MemoryCap:
    """The cap a plan fits under: --memory-cap, else the profile's usable memory.

    A "meminfo" profile (cpu) reads MemAvailable now. With `live_kind` (what `run` uses) the cap
    is also held to the memory free on the device the request runs on, plus what this process
    already holds, since the planned peak counts that too. `headless` plans as if the desktop
    were off, whatever the profile says (a live reading is not held to it: it is what it is).
    """
    cap = _stated_cap(profile, override_gib, meminfo, headless)
    if live_kind is None:
        return cap
    live = live_cap(live_kind, meminfo)
    return live if live.bytes < cap.bytes else cap


def live_cap(kind: str, meminfo: Path = MEMINFO) -> MemoryCap:
    """Free memory of the device now plus this process's own share of it."""
    memory = device_memory(kind, meminfo)
    held = process_bytes(kind)
    return MemoryCap(
        memory.free_bytes + held,
        f"free now: {memory.source} {gib(memory.free_bytes)} GiB"
        f" + {gib(held)} GiB held by this process",
    )


def _stated_cap(
    profile: DeviceProfile, override_gib: float | None, meminfo: Path, headless: bool = False
) -> MemoryCap:
    """The cap from --memory-cap or the profile, with its reason."""
    if override_gib is not None:
        if not override_gib > 0:
            raise InvalidArgumentError(
                expected("--memory-cap", "a positive number of GiB", override_gib)
            )
        return MemoryCap(int(override_gib * GIB), f"--memory-cap {override_gib:g} GiB")
    memory = profile.memory
    if memory.source == "meminfo":
        return live_cap("cpu", meminfo)
    with_desktop = memory.desktop and not headless
    desktop = f" - desktop {memory.desktop_gib:g}" if with_desktop else " (headless)"
    return MemoryCap(
        int(memory.usable_gib(headless) * GIB),
        f"{profile.name}: {memory.total_gib:g} GiB total - OS {memory.os_gib:g}{desktop}",
    )
