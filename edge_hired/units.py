"""Byte units, element sizes and weight quantization modes: the vocabulary every layer counts in.

One definition each, so the planner, the exporter, the profiles and the CLI agree.
"""

from __future__ import annotations

from edge_hired.errors import InvalidArgumentError, expected

GIB, MIB, KIB = 2**30, 2**20, 2**10
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Short names by full name, as flags and manifests write them.
SHORT_DTYPES = {full: short for short, full in DTYPE_ALIASES.items()}
#: How the LLM's Linear weights are stored: unquantised, LLM.int8 or NF4 (bitsandbytes).
QUANTIZATIONS = ("none", "8bit", "4bit")
#: Dtypes a bundle's encoder graph and unquantised weights can be exported in.
EXPORT_DTYPES = ("fp16", "fp32")


def check_quantization(name: str) -> str:
    """`name` if it is one of QUANTIZATIONS, else InvalidArgumentError."""
    if name not in QUANTIZATIONS:
        raise InvalidArgumentError(expected("quantization", "none, 8bit or 4bit", name))
    return name


def normal_dtype(name: str) -> str:
    """'float16' for 'float16' / 'fp16' / 'torch.float16', else InvalidArgumentError."""
    text = str(name).removeprefix("torch.")
    text = DTYPE_ALIASES.get(text, text)
    if text not in DTYPE_BYTES:
        raise InvalidArgumentError(expected("dtype", "float32, float16 or bfloat16", name))
    return text


def dtype_bytes(name: str) -> int:
    """Bytes of one element."""
    return DTYPE_BYTES[normal_dtype(name)]


def gib(value: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{value / GIB:.2f}"
