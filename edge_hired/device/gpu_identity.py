"""Which physical GPU torch's `cuda:i` is, so NVML readings are of that GPU and no other.

CUDA numbers GPUs fastest-first by default and through `CUDA_VISIBLE_DEVICES`; NVML numbers
them in PCI bus order. On a machine with two GPUs NVML index 0 can be the GPU nobody uses. The
UUID (and, failing that, the PCI bus id) names the same device in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GpuMatchError(Exception):
    """NVML has no GPU with torch's device's UUID or PCI bus id."""


@dataclass(frozen=True)
class GpuIdentity:
    """A CUDA device as torch sees it, with the names NVML knows it by."""

    index: int  # torch's cuda index
    name: str
    uuid: str | None  # NVML spelling: "GPU-xxxxxxxx-..."
    pci_bus_id: str | None  # NVML spelling: "00000000:01:00.0"


def torch_gpu(index: int | None = None) -> GpuIdentity | None:
    """torch's current (or given) CUDA device, or None where torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if index is None else index
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)  # torch >= 2.1
    uuid_text = None if uuid is None else str(uuid)
    if uuid_text and not uuid_text.startswith(("GPU-", "MIG-")):
        uuid_text = f"GPU-{uuid_text}"
    bus = getattr(props, "pci_bus_id", None)  # torch >= 2.3
    pci = None
    if bus is not None:
        domain, device = getattr(props, "pci_domain_id", 0), getattr(props, "pci_device_id", 0)
        pci = f"{domain:08X}:{bus:02X}:{device:02X}.0"
    return GpuIdentity(index, props.name, uuid_text, pci)


def nvml_handle(nvml: Any, gpu: GpuIdentity) -> Any:
    """The NVML handle of `gpu`: by UUID, else by PCI bus id; GpuMatchError when neither fits."""
    tried: list[str] = []
    if gpu.uuid:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
        except Exception as error:  # NVMLError_NotFound and kin
            tried.append(f"UUID {gpu.uuid}: {error}")
    if gpu.pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(gpu.pci_bus_id)
        except Exception as error:
            tried.append(f"PCI bus id {gpu.pci_bus_id}: {error}")
    raise GpuMatchError(
        f"cuda:{gpu.index} ({gpu.name}): expected an NVML GPU with its UUID or PCI bus id, got "
        + ("; ".join(tried) or "neither from torch")
    )
