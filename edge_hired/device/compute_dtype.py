"""The dtype the LLM and projector compute in on this device, decided once, with a reason.

A bundle records the dtype it was exported in; fp16 suits a GPU, but a CPU has no fast fp16
matmul (PyTorch emulates it), so an unquantized fp16 bundle on a CPU computes in bf16 where the
CPU has bf16 instructions (AVX-512 BF16 / AMX on x86, the BF16 feature on Arm) and in fp32
elsewhere. Quantized bundles keep their exported dtype: transformers loads a pre-quantized
checkpoint only in it, and LLM.int8 computes in fp16 alone; the reason says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether /proc/cpuinfo lists a bf16 instruction set (x86 `flags`, Arm `Features`)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("flags", "Features") and _BF16_FLAGS & set(values.split()):
            return True
    return False


def runtime_dtype(
    saved: torch.dtype,
    device: torch.device,
    quantization: str = "none",
    bf16: bool | None = None,
) -> tuple[torch.dtype, str]:
    """(compute dtype, why) for a model saved in `saved`, run on `device`.

    `bf16` says whether the CPU has bf16 instructions (None: read /proc/cpuinfo).
    """
    name = _name(saved)
    if torch.device(device).type != "cpu" or saved != torch.float16:
        return saved, f"compute {name} (as exported)"
    if quantization != "none":
        return saved, (
            f"compute float16 on the CPU: a {quantization} bundle loads only in its exported "
            "dtype (slow here; export with --quant none for a CPU)"
        )
    if cpu_has_bf16() if bf16 is None else bf16:
        return torch.bfloat16, "compute bfloat16: fp16 bundle on a CPU with bf16 instructions"
    return torch.float32, "compute float32: fp16 bundle on a CPU without fast fp16 or bf16"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
