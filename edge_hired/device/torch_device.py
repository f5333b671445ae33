"""Choose, once, the torch device and dtype the runtime uses, with a reason the user sees."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.units import DTYPE_ALIASES, DTYPE_BYTES, normal_dtype


@dataclass(frozen=True)
class DeviceChoice:
    """A torch device, its compute dtype, and why they were picked."""

    device: torch.device
    dtype: torch.dtype
    reason: str


#: torch's dtype of each name in `edge_hired.units.DTYPE_BYTES`.
TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_BYTES}


def torch_dtype(name: str) -> torch.dtype:
    """torch.float16 for 'fp16', 'float16' or 'torch.float16'."""
    return TORCH_DTYPES[normal_dtype(name)]


def choose_torch_device(requested: str = "auto", dtype: str | None = None) -> DeviceChoice:
    """'auto' takes CUDA when torch sees it, else the CPU; fp16 on CUDA, fp32 on the CPU."""
    if requested not in ("auto", "cpu", "cuda"):
        raise InvalidArgumentError(expected("device", "auto, cpu or cuda", requested))
    if dtype is not None and dtype not in DTYPE_ALIASES:
        raise InvalidArgumentError(expected("dtype", ", ".join(DTYPE_ALIASES), dtype))
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device cuda: expected a CUDA device, got none visible to torch")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if use_cuda:
        name = torch.cuda.get_device_name(0)
        chosen = torch_dtype(dtype or "fp16")
        return DeviceChoice(torch.device("cuda"), chosen, f"cuda: {name}")
    why = "requested" if requested == "cpu" else "no CUDA device visible to torch"
    return DeviceChoice(torch.device("cpu"), torch_dtype(dtype or "fp32"), f"cpu: {why}")
