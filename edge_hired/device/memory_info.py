"""Free and total memory of the device a request runs on, and the memory cap a plan uses.

On a CPU and on a unified-memory Jetson the figure that counts is MemAvailable from
/proc/meminfo: memory the kernel can hand out without swapping, reclaimable page cache included.
`cudaMemGetInfo` (torch.cuda.mem_get_info) reports MemFree on Jetson, which leaves the page cache
out and makes a board with gigabytes of clean cache look full; it is used only for discrete GPUs.
Readers take the file path as an argument so tests run on captured files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_hired.budget import GIB, MemoryCap, gib
from edge_hired.device.memory import current_rss_mib
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected

if TYPE_CHECKING:
    from edge_hired.profiles import DeviceProfile

MEMINFO = Path("/proc/meminfo")
MEMORY_KINDS = ("cpu", "unified", "discrete")


class MemoryInfoError(EdgeHiredError):
    """Memory figures that cannot be read."""


@dataclass(frozen=True)
class DeviceMemory:
    """Free and total bytes of one device and where they were read."""

    free_bytes: int
    total_bytes: int
    source: str


def read_meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """/proc/meminfo as {field: bytes} (the kernel writes kB, meaning KiB)."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise MemoryInfoError(f"{path}: cannot read memory figures ({error})") from error
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            fields[name.strip()] = int(parts[0]) * scale
    return fields


def mem_available_bytes(path: Path = MEMINFO) -> int:
    """MemAvailable, the memory a new allocation can get without swapping."""
    fields = read_meminfo(path)
    if "MemAvailable" not in fields:
        raise MemoryInfoError(f"{path}: expected a MemAvailable line (Linux >= 3.14), got none")
    return fields["MemAvailable"]


def host_memory(path: Path = MEMINFO) -> DeviceMemory:
    """MemAvailable and MemTotal of the host (CPU or unified-memory Jetson)."""
    fields = read_meminfo(path)
    if "MemAvailable" not in fields or "MemTotal" not in fields:
        raise MemoryInfoError(f"{path}: expected MemTotal and MemAvailable lines, got neither")
    return DeviceMemory(fields["MemAvailable"], fields["MemTotal"], f"MemAvailable in {path}")


def cuda_memory(index: int = 0) -> DeviceMemory:
    """Free and total memory of a discrete GPU (torch.cuda.mem_get_info)."""
    import torch

    if not torch.cuda.is_available():
        raise MemoryInfoError("cuda: expected a CUDA device visible to torch, got none")
    free, total = torch.cuda.mem_get_info(index)
    return DeviceMemory(int(free), int(total), f"cudaMemGetInfo of cuda:{index}")


def device_memory(kind: str, meminfo: Path = MEMINFO) -> DeviceMemory:
    """Memory of a 'cpu', 'unified' (Jetson) or 'discrete' (GPU) device."""
    if kind not in MEMORY_KINDS:
        raise InvalidArgumentError(expected("memory kind", ", ".join(MEMORY_KINDS), kind))
    return cuda_memory() if kind == "discrete" else host_memory(meminfo)


def process_bytes(kind: str) -> int:
    """What this process already holds of that memory (it counts in the plan's peak).

    On a discrete GPU that is the device-level figure (NVML per process: CUDA context and ONNX
    Runtime's arena included); torch's `memory_reserved` only where NVML cannot say. On a
    Jetson, the RSS plus torch's CUDA allocations, which live in NvMap, outside the RSS.
    """
    if kind == "cpu":
        return int(current_rss_mib() * 2**20)
    import torch

    reserved = int(torch.cuda.memory_reserved()) if torch.cuda.is_initialized() else 0
    if kind == "unified":
        return int(current_rss_mib() * 2**20) + reserved
    from edge_hired.device.device_memory import nvml_process_bytes

    held = nvml_process_bytes()
    return held if held is not None else reserved


def memory_cap(
    profile: DeviceProfile,
    override_gib: float | None = None,
    live_kind: str | None = None,
    meminfo: Path = MEMINFO,
) -> MemoryCap:
    """The cap a plan fits under: --memory-cap, else the profile's usable memory.

    A "meminfo" profile (cpu) reads MemAvailable now. With `live_kind` (what `run` uses) the cap
    is also held to the memory free on the device the request runs on, plus what this process
    already holds, since the planned peak counts that too.
    """
    cap = _stated_cap(profile, override_gib, meminfo)
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


def _stated_cap(profile: DeviceProfile, override_gib: float | None, meminfo: Path) -> MemoryCap:
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
    desktop = f" - desktop {memory.desktop_gib:g}" if memory.desktop else " (headless)"
    return MemoryCap(
        int(memory.usable_gib() * GIB),
        f"{profile.name}: {memory.total_gib:g} GiB total - OS {memory.os_gib:g}{desktop}",
    )
