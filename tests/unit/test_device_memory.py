"""Device-level memory: NVML per process on a discrete GPU, MemAvailable on a Jetson, GPU matching.

Fakes stand in for pynvml and torch.cuda; the numbers are what an 8 GB GPU would report with a
CUDA context and ONNX Runtime's arena that torch's allocator counters do not see.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edge_hired.device import gpu_identity
from edge_hired.device.device_memory import DeviceMeter, meter_for, process_bytes, unified_reading
from edge_hired.device.gpu_identity import GpuIdentity, GpuMatchError, nvml_handle
from edge_hired.device.telemetry import nvml_backend
from edge_hired.device.telemetry.nvml_backend import NvmlSampler

MIB = 2**20
#: Two GPUs in PCI order; CUDA's device 0 is NVML's index 1 (the faster card sits second).
GPUS = [
    {"uuid": "GPU-aaaa", "pci": "00000000:01:00.0", "name": "NVIDIA T400"},
    {"uuid": "GPU-bbbb", "pci": "00000000:02:00.0", "name": "NVIDIA RTX 4060"},
]
TORCH_GPU = GpuIdentity(0, "NVIDIA RTX 4060", "GPU-bbbb", "00000000:02:00.0")


class TwoGpuNvml:
    """The pynvml calls made for matching and per-process memory."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, used_by_us: int = 1500 * MIB) -> None:
        self.used_by_us = used_by_us

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(GPUS)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return next(i for i, g in enumerate(GPUS) if g["uuid"] == uuid)

    def nvmlDeviceGetHandleByPciBusId(self, pci):
        return next(i for i, g in enumerate(GPUS) if g["pci"] == pci)

    def nvmlDeviceGetName(self, handle):
        return GPUS[handle]["name"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        ours = SimpleNamespace(pid=os.getpid(), usedGpuMemory=self.used_by_us)
        other = SimpleNamespace(pid=1, usedGpuMemory=3000 * MIB)
        return [ours, other] if handle == 1 else [other]


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> TwoGpuNvml:
    nvml = TwoGpuNvml()
    monkeypatch.setattr(nvml_backend, "import_nvml", lambda: nvml)
    monkeypatch.setattr(gpu_identity, "torch_gpu", lambda index=None: TORCH_GPU)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1000 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 1200 * MIB)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    return nvml


def test_live_cap_counts_what_the_gpu_holds_for_us_not_torchs_share(fake_gpu) -> None:
    assert process_bytes("discrete") == 1500 * MIB  # torch.cuda.memory_reserved says 1000


def test_nvml_sampler_opens_the_gpu_torch_uses(fake_gpu) -> None:
    sampler = NvmlSampler(fake_gpu)
    assert sampler.device_name == "NVIDIA RTX 4060"  # NVML index 0 is the T400


def test_matching_falls_back_to_the_pci_bus_id() -> None:
    gpu = GpuIdentity(0, "NVIDIA RTX 4060", None, "00000000:02:00.0")
    assert nvml_handle(TwoGpuNvml(), gpu) == 1
    with pytest.raises(GpuMatchError, match=r"cuda:0 \(x\): expected an NVML GPU"):
        nvml_handle(TwoGpuNvml(), GpuIdentity(0, "x", None, None))


def test_device_peak_counts_torchs_high_water_mark_between_marks(fake_gpu) -> None:
    meter = DeviceMeter("discrete", nvml=fake_gpu)
    meter.reset()
    meter.sample()
    # last sample 1500 MiB, 1000 of it torch's: 500 outside + torch's peak 1200 = 1700
    assert meter.peak_mib() == pytest.approx(1700)
    assert meter.samples[0].source == "NVML per-process memory"


def test_cpu_has_no_device_peak() -> None:
    meter = meter_for("cpu")
    meter.reset()
    assert meter.sample() is None and meter.peak_mib() is None


def test_jetson_reads_memavailable(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 7620000 kB\nMemFree: 500000 kB\nMemAvailable: 4900000 kB\n")
    reading = unified_reading(meminfo, nvmap_bytes=1024 * MIB)
    assert reading.bytes == (7620000 - 4900000) * 1024
    assert reading.source == "MemTotal - MemAvailable; NvMap (GPU) 1024 MiB per jtop"
    assert meter_for("cuda", jetson=True).kind == "unified"
