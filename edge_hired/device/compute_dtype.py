"""The dtype the LLM and projector compute in on this device, decided once, with a reason.

`choose_compute_dtype` is the one rule (the target builder, `edge_hired.runtime.target`, is its
caller); it takes the device's abilities as arguments so tests can fake any GPU.

- A `--dtype` flag wins. LLM.int8 (`8bit`) computes in fp16 alone.
- A bundle keeps its exported dtype, except an unquantized fp16 bundle on a CPU: a CPU has no
  fast fp16 matmul (PyTorch emulates it), so it computes in bf16 where the CPU has bf16
  instructions (AVX-512 BF16 / AMX on x86, the BF16 feature on Arm) and in fp32 elsewhere.
  Quantized bundles keep their exported dtype: transformers loads a pre-quantized checkpoint only
  in it.
- A checkpoint trained in bf16 computes in bf16 on a GPU that does bf16 (compute capability
  >= 8.0: Ampere, Ada, Hopper, Orin sm_87); bf16-trained Qwen2-family LLMs overflow to NaN or
  "!!!!" in fp16 (QwenLM/Qwen3#761, transformers#33294). On Pascal and Turing (P40, T4) it falls
  back to fp16 with a one-line warning. Otherwise a GPU takes the profile's dtype, else fp16, and
  a CPU fp32 (the profile's dtype where one applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
BF16, FP16, FP32 = "bfloat16", "float16", "float32"


@dataclass(frozen=True)
class DtypeChoice:
    """A compute dtype (full name), why, and a warning the user should see (or None)."""

    dtype: str
    reason: str
    warning: str | None = None


@dataclass(frozen=True)
class SavedModel:
    """What the model on disk says about itself: its dtype, quantization, and whether a bundle."""

    dtype: str  # "float32" / "float16" / "bfloat16": a checkpoint's config dtype, a bundle's
    quantization: str = "none"
    bundle: bool = False


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


def choose_compute_dtype(
    device_type: str,
    saved: SavedModel,
    requested: str | None = None,
    default: str | None = None,
    bf16: bool = False,
) -> DtypeChoice:
    """The compute dtype of `saved` on `device_type` ("cpu" / "cuda").

    `requested`: the --dtype flag (full name); `default`: the profile's dtype for this device;
    `bf16`: whether the device computes bf16 (the GPU's capability, or the CPU's instructions).
    """
    if requested is not None:
        return DtypeChoice(requested, f"compute {requested}: requested")
    if saved.quantization == "8bit":
        return DtypeChoice(FP16, "compute float16: LLM.int8 (8bit) computes in fp16 only")
    if saved.bundle:
        return _bundle_dtype(device_type, saved, bf16)
    if saved.dtype == BF16 and device_type != "cpu":
        return _bf16_checkpoint_on_gpu(bf16)
    chosen = default or (FP32 if device_type == "cpu" else FP16)
    source = "the profile's" if default else f"the {device_type} default"
    return DtypeChoice(chosen, f"compute {chosen}: {source}")


def _bundle_dtype(device_type: str, saved: SavedModel, bf16: bool) -> DtypeChoice:
    """A bundle's exported dtype, or bf16 / fp32 for an unquantized fp16 bundle on a CPU."""
    if device_type != "cpu" or saved.dtype != FP16:
        return DtypeChoice(saved.dtype, f"compute {saved.dtype} (as exported)")
    if saved.quantization != "none":
        return DtypeChoice(
            saved.dtype,
            f"compute float16 on the CPU: a {saved.quantization} bundle loads only in its "
            "exported dtype (slow here; export with --quant none for a CPU)",
        )
    if bf16:
        return DtypeChoice(BF16, "compute bfloat16: fp16 bundle on a CPU with bf16 instructions")
    return DtypeChoice(FP32, "compute float32: fp16 bundle on a CPU without fast fp16 or bf16")


def _bf16_checkpoint_on_gpu(bf16: bool) -> DtypeChoice:
    """bf16 where the GPU does it; else fp16, warning that bf16-trained weights may overflow."""
    if bf16:
        return DtypeChoice(BF16, "compute bfloat16: a bf16 checkpoint on a GPU that does bf16")
    return DtypeChoice(
        FP16,
        "compute float16: this GPU has no bf16 (compute capability < 8.0)",
        "the checkpoint was trained in bfloat16 and this GPU has no bf16 (compute capability "
        "< 8.0: Pascal, Turing): computing in float16 may overflow to NaN or '!!!!'",
    )
