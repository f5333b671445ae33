"""Byte units and element sizes: the vocabulary every other planner module counts in."""

from __future__ import annotations

from edge_hired.errors import InvalidArgumentError, expected

GIB, MIB, KIB = 2**30, 2**20, 2**10
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


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
