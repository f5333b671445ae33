"""Bilinear downsampling as torch's `interpolate(mode="bilinear")` computes it, in numpy.

LLaVA-OneVision shrinks a large stitched sub-image grid with `nn.functional.interpolate(...,
mode="bilinear")` (align_corners=False, no antialiasing). HiRED must select among the positions
of that shrunken grid, rank them by score maps resized the same way, and rebuild a kept
position's features from the few source tokens it interpolates. So the taps and weights here
repeat torch's float32 arithmetic step by step (scale = in / out in float32, source
index `scale * (i + 0.5) - 0.5` fused and clamped at 0, the upper tap clamped to the last row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_hired.errors import InvalidArgumentError, expected


@dataclass(frozen=True, eq=False)
class Taps:
    """For every output index along one axis: its two source indices and their weights."""

    low: np.ndarray  # [out] int64
    high: np.ndarray  # [out] int64 (== low at the last source index)
    w_low: np.ndarray  # [out] float32
    w_high: np.ndarray  # [out] float32


def linear_taps(in_size: int, out_size: int) -> Taps:
    """Source taps of a 1-D linear resize from in_size to out_size (align_corners=False)."""
    if in_size < 1 or out_size < 1:
        raise InvalidArgumentError(expected("resize sizes", "(>= 1, >= 1)", (in_size, out_size)))
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    # torch's kernel computes scale * (i + 0.5) - 0.5 as one fused multiply-add: the product is
    # exact in float64 (24 x 12 bits), so rounding once to float32 reproduces it.
    real = (scale * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    real = np.maximum(real, np.float32(0.0))
    low = real.astype(np.int64)
    high = low + (low < in_size - 1)
    w_high = np.clip(real - low.astype(np.float32), np.float32(0.0), np.float32(1.0))
    return Taps(low, high, np.float32(1.0) - w_high, w_high)


def centre_sources(in_size: int, out_size: int) -> np.ndarray:
    """The source index whose cell holds each output cell's centre: floor((2i + 1) in / 2 out).

    Exact integer arithmetic; injective whenever out_size <= in_size (a downsampling).
    """
    return (2 * np.arange(out_size, dtype=np.int64) + 1) * in_size // (2 * out_size)


def fused(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32(a * b + c) rounded once, as a fused multiply-add (the product is exact in f64)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def blend(
    corners: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    weights_y: tuple[np.ndarray, np.ndarray],
    weights_x: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Combine the four corner values (y0x0, y0x1, y1x0, y1x1) in torch's CPU order.

    fma(wy0, fma(wx0, v00, wx1 * v01), wy1 * fma(wx0, v10, wx1 * v11)): bit-exact with
    `interpolate(mode="bilinear")` on the CPU in float32.
    """
    v00, v01, v10, v11 = corners
    (wy0, wy1), (wx0, wx1) = weights_y, weights_x
    top = fused(wx0, v00, (wx1 * v01).astype(np.float32))
    bottom = fused(wx0, v10, (wx1 * v11).astype(np.float32))
    return fused(wy0, top, (wy1 * bottom).astype(np.float32))


def bilinear(grid: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize [H, W] float scores to out_hw with torch's bilinear taps, in float32."""
    values = np.asarray(grid, dtype=np.float32)
    ty, tx = linear_taps(values.shape[0], out_hw[0]), linear_taps(values.shape[1], out_hw[1])
    rows_low, rows_high = values[ty.low], values[ty.high]
    corners = (
        rows_low[:, tx.low],
        rows_low[:, tx.high],
        rows_high[:, tx.low],
        rows_high[:, tx.high],
    )
    return blend(
        corners,
        (ty.w_low[:, None], ty.w_high[:, None]),
        (tx.w_low[None, :], tx.w_high[None, :]),
    )
