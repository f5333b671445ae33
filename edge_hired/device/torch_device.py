"""Choose the torch device the runtime uses, with a reason the user sees, and read its abilities.

`choose_torch_device` has one caller, the target builder (`edge_hired.runtime.target`), which
decides the device, dtype and quantization of a command once and passes them down.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.units import DTYPE_BYTES, normal_dtype


@dataclass(frozen=True)
class DeviceChoice:
    """A torch device and why it was picked (its compute dtype is the target builder's)."""

    device: torch.device
    reason: str


#: torch's dtype of each name in `edge_hired.units.DTYPE_BYTES`.
TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_BYTES}


def torch_dtype(name: str) -> torch.dtype:
    """torch.float16 for 'fp16', 'float16' or 'torch.float16'."""
    return TORCH_DTYPES[normal_dtype(name)]


def choose_torch_device(requested: str = "auto") -> DeviceChoice:
    """'auto' takes CUDA when torch sees it, else the CPU."""
    if requested not in ("auto", "cpu", "cuda"):
        raise InvalidArgumentError(expected("device", "auto, cpu or cuda", requested))
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device cuda: expected a CUDA device, got none visible to torch")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return DeviceChoice(torch.device("cuda"), f"cuda: {torch.cuda.get_device_name(0)}")
    why = "requested" if requested == "cpu" else "no CUDA device visible to torch"
    return DeviceChoice(torch.device("cpu"), f"cpu: {why}")


#: The first CUDA compute capability with bf16 arithmetic (Ampere; Orin is sm_87).
BF16_CAPABILITY = (8, 0)


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether the CUDA device computes bf16: compute capability >= 8.0 (not Pascal, Turing)."""
    return tuple(torch.cuda.get_device_capability(device)) >= BF16_CAPABILITY


def placement(device: torch.device | str) -> str:
    """accelerate's spelling of a device for `device_map`: 'cpu', 'cuda:0'."""
    device = torch.device(device)
    return device.type if device.type == "cpu" else f"{device.type}:{device.index or 0}"
