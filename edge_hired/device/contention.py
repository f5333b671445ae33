"""What else competes for the machine during a request: CPU pressure, heap, queued GPU work.

Readings a benchmark takes around each request so its figures are its own:
- CPU pressure (Linux PSI): `/proc/pressure/cpu` "some" line — avg10, and the `total` counter
  from which `stall_pct` gives the share of a run's wall time during which some task waited for
  a CPU. None where the kernel has no PSI.
- `release_free_heap`: collect garbage and hand freed heap pages back to the OS (glibc's
  `malloc_trim`), so the next request's RSS peak does not carry the last one's.
- CUDA: drain queued work (`synchronize`) and read / reset the allocator's peak; no-ops and None
  on other devices.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from edge_hired.units import MIB

PRESSURE_FILE = Path("/proc/pressure/cpu")


@dataclass(frozen=True)
class CpuPressure:
    """One reading of /proc/pressure/cpu's "some" line."""

    avg10: float
    total_us: int


def read_cpu_pressure(path: Path = PRESSURE_FILE) -> CpuPressure | None:
    """The 'some' line of the CPU pressure file, or None where the kernel has no PSI."""
    try:
        line = next(x for x in path.read_text().splitlines() if x.startswith("some "))
    except (OSError, StopIteration):
        return None
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return CpuPressure(float(fields["avg10"]), int(fields["total"]))


def stall_pct(
    before: CpuPressure | None, after: CpuPressure | None, seconds: float
) -> float | None:
    """Percent of `seconds` during which some task waited for a CPU."""
    if before is None or after is None or seconds <= 0:
        return None
    return 100 * (after.total_us - before.total_us) / 1e6 / seconds


def release_free_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS is current."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: musl has no malloc_trim
            ctypes.CDLL(name).malloc_trim(0)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work; a no-op unless `device` is a CUDA device."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_cuda_peak(device: torch.device) -> None:
    """Start a new CUDA allocator peak; a no-op unless `device` is a CUDA device."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mib(device: torch.device) -> float | None:
    """CUDA's allocator peak since the last reset, in MiB; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / MIB
