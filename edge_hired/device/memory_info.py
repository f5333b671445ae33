"""Free and total memory of the device a request runs on, and the memory cap a plan uses.

On a CPU and on a unified-memory Jetson the figure that counts is MemAvailable from
/proc/meminfo: memory the kernel can hand out without swapping, reclaimable page cache included.
`cudaMemGetInfo` (torch.cuda.mem_get_info) reports MemFree on Jetson, which leaves the page cache
out and makes a board with gigabytes of clean cache look full; it is used only for discrete GPUs.
Readers take the file path as an argument so tests run on hand-made files of that format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected

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
