"""Discrete-GPU telemetry through NVML (nvidia-ml-py, `import pynvml`): memory, load, power, heat.

NVML numbers GPUs in PCI bus order, which is not CUDA's default order, so by default the GPU is
the one torch uses, matched by UUID or PCI bus id (`gpu_identity`); `index` is an explicit NVML
index, used only when given or when torch sees no CUDA device.
Power is the GPU board's draw in mW (on recent GPUs a 1 s average), not the whole machine's.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from edge_hired.device import gpu_identity
from edge_hired.device.gpu_identity import GpuIdentity, GpuMatchError, nvml_handle
from edge_hired.device.telemetry.base import (
    POWER_KEY,
    Probe,
    ProcessProbe,
    Readings,
    Sampler,
    TelemetryUnavailable,
)
from edge_hired.units import MIB


def import_nvml() -> ModuleType:
    """pynvml, or TelemetryUnavailable naming the package to install."""
    try:
        import pynvml
    except ImportError as e:
        raise TelemetryUnavailable("nvidia-ml-py not installed: pip install nvidia-ml-py") from e
    return pynvml


class NvmlSampler(Sampler):
    """Reads one GPU through an NVML module (pynvml, or a test fake with the same functions)."""

    name = "nvml"
    memory_key = "gpu_mem_used_mib"
    expected = ("gpu_mem_used_mib", "gpu_load_pct", POWER_KEY, "temp_gpu_c")

    def __init__(
        self, nvml: Any = None, index: int | None = None, gpu: GpuIdentity | None = None
    ) -> None:
        self._nvml = nvml if nvml is not None else import_nvml()
        if gpu is None and index is None:
            gpu = gpu_identity.torch_gpu()
        self.device_name, self._handle = _open_gpu(self._nvml, index or 0, gpu)
        self.index = index if index is not None else (gpu.index if gpu else 0)
        self._groups: dict[str, Probe] = {
            "memory": self._memory,
            "utilization": self._utilization,
            "power": self._power,
            "temperature": self._temperature,
            "process": ProcessProbe(),
        }

    def groups(self) -> dict[str, Probe]:
        return self._groups

    def close(self) -> None:
        self._nvml.nvmlShutdown()

    def _memory(self) -> Readings:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return {"gpu_mem_used_mib": info.used / MIB, "gpu_mem_total_mib": info.total / MIB}

    def _utilization(self) -> Readings:
        rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        return {"gpu_load_pct": float(rates.gpu), "gpu_mem_load_pct": float(rates.memory)}

    def _power(self) -> Readings:
        return {POWER_KEY: float(self._nvml.nvmlDeviceGetPowerUsage(self._handle))}

    def _temperature(self) -> Readings:
        sensor = self._nvml.NVML_TEMPERATURE_GPU
        return {"temp_gpu_c": float(self._nvml.nvmlDeviceGetTemperature(self._handle, sensor))}


def _open_gpu(nvml: Any, index: int, gpu: GpuIdentity | None = None) -> tuple[str, Any]:
    """Initialise NVML and open `gpu` (torch's device) or else NVML GPU `index`."""
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError (no driver, no library) or OSError from ctypes
        raise TelemetryUnavailable(f"NVML init failed: {e or type(e).__name__}") from e
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            raise TelemetryUnavailable("NVML runs but sees no GPU")
        if index >= count:
            raise TelemetryUnavailable(f"NVML sees {count} GPU(s), none with index {index}")
        handle = nvml_handle(nvml, gpu) if gpu else nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
    except GpuMatchError as e:
        nvml.nvmlShutdown()
        raise TelemetryUnavailable(str(e)) from e
    except TelemetryUnavailable:
        nvml.nvmlShutdown()
        raise
    except Exception as e:  # NVMLError from a driver that initialised but cannot enumerate
        nvml.nvmlShutdown()
        raise TelemetryUnavailable(f"NVML cannot open GPU {index}: {e}") from e
    return (name.decode() if isinstance(name, bytes) else str(name)), handle
