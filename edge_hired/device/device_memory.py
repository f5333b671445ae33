"""Device-level memory of this process: what the GPU really holds for it, not torch's share.

torch's allocator counters (`memory_reserved`, `max_memory_allocated`) leave out the CUDA
context (~0.3-0.7 GiB), cuBLAS/cuDNN workspaces and ONNX Runtime's own CUDA arena, which is
what runs out first on an 8 GB GPU. So:
- discrete GPU: NVML's per-process figure for this process on the GPU torch uses (matched by
  UUID / PCI bus id); without NVML, the device's used memory from `cudaMemGetInfo` (all
  processes; said so in `source`);
- Jetson (unified memory): MemTotal - MemAvailable from /proc/meminfo (what the planner's cap is
  read from), with jtop's NvMap figure (the GPU's share of RAM) beside it when the service runs;
- CPU: nothing (peak RSS is the figure there).
A `DeviceMeter` is sampled at the request's phase marks (after the device synchronized); its
peak also counts torch's allocator high-water mark, which can fall between two marks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_hired.device.memory import current_rss_mib
from edge_hired.device.memory_info import MEMINFO, read_meminfo
from edge_hired.units import MIB


@dataclass(frozen=True)
class DeviceReading:
    """Bytes in use and where the figure came from."""

    bytes: int
    source: str


class NvmlProcessReader:
    """This process's memory on torch's GPU per NVML; opened once, None where NVML cannot say."""

    def __init__(self, nvml: Any = None, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._nvml, self._handle = _open_nvml(nvml)

    def __call__(self) -> int | None:
        if self._handle is None:
            return None
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception:  # NVMLError: not supported on this GPU / driver, no permission
            return None
        used = [p.usedGpuMemory for p in processes if p.pid == self.pid]
        used = [u for u in used if u is not None]  # None: the driver hides it (e.g. WDDM)
        return int(sum(used)) if used else None


def _open_nvml(nvml: Any) -> tuple[Any, Any]:
    """(nvml module, handle of torch's GPU), or (None, None) without NVML or a match."""
    from edge_hired.device.gpu_identity import nvml_handle, torch_gpu
    from edge_hired.device.telemetry import nvml_backend

    try:
        nvml = nvml if nvml is not None else nvml_backend.import_nvml()
        nvml.nvmlInit()
    except Exception:  # TelemetryUnavailable (no package), NVMLError (no driver library)
        return None, None
    gpu = torch_gpu()
    try:
        return nvml, nvml_handle(nvml, gpu) if gpu else nvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # GpuMatchError, NVMLError
        return None, None


def nvml_process_bytes(nvml: Any = None, pid: int | None = None) -> int | None:
    """One reading of this process's GPU memory per NVML (None where NVML cannot say)."""
    return NvmlProcessReader(nvml, pid)()


@dataclass(frozen=True)
class NvmlUsage:
    """NVML's figures over every GPU it sees, read without touching CUDA (no context made)."""

    own: int | None  # this process's memory; None: NVML does not list it (no context yet, or
    #                  a container whose PIDs NVML does not see)
    device_used: int  # memory in use on the GPUs, every process's


def nvml_usage(nvml: Any = None, pid: int | None = None) -> NvmlUsage | None:
    """This process's and all processes' GPU memory per NVML; None without NVML.

    It goes by NVML's device indices, not torch's, so it can be read before CUDA initialises.
    """
    from edge_hired.device.telemetry import nvml_backend

    pid = os.getpid() if pid is None else pid
    try:
        nvml = nvml if nvml is not None else nvml_backend.import_nvml()
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        used = sum(int(nvml.nvmlDeviceGetMemoryInfo(h).used) for h in handles)
    except Exception:  # TelemetryUnavailable (no package), NVMLError (no driver library)
        return None
    own = [_own_bytes(nvml, h, pid) for h in handles]
    listed = [b for b in own if b is not None]
    return NvmlUsage(sum(listed) if listed else None, used)


def _own_bytes(nvml: Any, handle: Any, pid: int) -> int | None:
    try:
        processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:  # NVMLError: not supported on this GPU / driver
        return None
    used = [p.usedGpuMemory for p in processes if p.pid == pid and p.usedGpuMemory is not None]
    return int(sum(used)) if used else None


@dataclass
class DeviceMeter:
    """Samples one device's memory use; `peak_mib` is None where there is no device memory."""

    kind: str  # "cpu", "discrete" or "unified"
    meminfo: Path = MEMINFO
    nvml: Any = None
    samples: list[DeviceReading] = field(default_factory=list)
    _reader: NvmlProcessReader | None = None

    def reset(self) -> None:
        """Start a new request: forget samples, restart torch's allocator peak."""
        self.samples.clear()
        if self.kind != "cpu":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> DeviceReading | None:
        """Read the device now (None on a CPU)."""
        if self.kind == "cpu":
            return None
        reading = self.read()
        self.samples.append(reading)
        return reading

    def read(self) -> DeviceReading:
        """This process's device memory (discrete) or the board's RAM in use (unified)."""
        if self.kind == "unified":
            return unified_reading(self.meminfo)
        import torch

        if self._reader is None:
            self._reader = NvmlProcessReader(self.nvml)
        held = self._reader()
        if held is not None:
            return DeviceReading(held, "NVML per-process memory")
        free, total = torch.cuda.mem_get_info()
        return DeviceReading(int(total - free), "cudaMemGetInfo used (all processes)")

    def peak_mib(self) -> float | None:
        """The request's device peak: the highest sample, or torch's high-water mark on top of
        what the last sample held outside torch's allocator, whichever is higher."""
        if self.kind == "cpu" or not self.samples:
            return None
        import torch

        last = self.samples[-1].bytes
        outside = max(last - torch.cuda.memory_reserved(), 0)
        between_marks = outside + torch.cuda.max_memory_reserved()
        return max(max(s.bytes for s in self.samples), between_marks) / MIB


def unified_reading(meminfo: Path = MEMINFO, nvmap_bytes: int | None = None) -> DeviceReading:
    """MemTotal - MemAvailable (RAM in use, the GPU's share included), and NvMap if known.

    jtop's NvMap figure (`jtop_nvmap_bytes`) takes a service round trip, so callers read it
    once, not at every phase mark.
    """
    fields = read_meminfo(meminfo)
    used = fields["MemTotal"] - fields["MemAvailable"]
    note = "" if nvmap_bytes is None else f"; NvMap (GPU) {nvmap_bytes / MIB:.0f} MiB per jtop"
    return DeviceReading(used, f"MemTotal - MemAvailable{note}")


def jtop_nvmap_bytes(factory: Any = None) -> int | None:
    """jtop's RAM 'shared' figure (NvMap: memory the GPU holds), or None without the service."""
    try:
        if factory is None:
            from jtop import jtop as factory
        with factory() as client:
            if not client.ok():
                return None
            return int(client.memory["RAM"]["shared"]) * 1024  # jtop reports kB
    except Exception:  # ImportError, JtopException (service not active, no permission)
        return None


def meter_for(device_type: str, jetson: bool | None = None) -> DeviceMeter:
    """The meter of a torch device type: unified on a Jetson's CUDA, discrete on other CUDA."""
    if device_type != "cuda":
        return DeviceMeter("cpu")
    if jetson is None:
        from edge_hired.device.jetson import detect_jetson

        jetson = detect_jetson().is_jetson
    return DeviceMeter("unified" if jetson else "discrete")


def process_bytes(kind: str) -> int:
    """What this process already holds of that memory (it counts in the plan's peak).

    On a discrete GPU that is the device-level figure (NVML per process: CUDA context and ONNX
    Runtime's arena included); torch's `memory_reserved` only where NVML cannot say. On a
    Jetson, the RSS plus torch's CUDA allocations, which live in NvMap, outside the RSS.
    """
    if kind == "cpu":
        return int(current_rss_mib() * MIB)
    import torch

    reserved = int(torch.cuda.memory_reserved()) if torch.cuda.is_initialized() else 0
    if kind == "unified":
        return int(current_rss_mib() * MIB) + reserved
    held = nvml_process_bytes()
    return held if held is not None else reserved
