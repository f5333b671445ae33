"""The grid-dependent inputs of the ONNX Qwen-VL encoder, computed on the host with numpy.

The stock tower derives several index tensors from `grid_thw` with loops and `.tolist()`,
which a graph with dynamic shapes cannot hold. They depend only on the patch grid, so the host
computes them here, in the processor's patch order (merge block by merge block), and the graph
only gathers and compares:

- `rotary_ids` [N, 2]: each patch's (row, col), what the 2-D vision rotary embeds;
- Qwen3-VL / Qwen3.5 `pos_index`, `pos_weight` [4, N]: the four corners and weights of the
  bilinear (align-corners) resampling of the learned position grid to the patch grid;
- Qwen2.5-VL `window_index` [U] (`hired.native_geometry.window_index`) and `window_ids` [N]: the
  window of each patch in window order, from which the graph builds the windowed blocks' mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.native_geometry import NativeGeometry, window_index
from edge_hired.runtime.qwen_encoder_spec import (
    POS_INDEX,
    POS_WEIGHT,
    ROTARY_IDS,
    WINDOW_IDS,
    WINDOW_INDEX,
    QwenEncoderSpec,
)


def grid_geometry(grid_thw: Sequence[int], patch_size: int, merge: int) -> NativeGeometry:
    """The geometry of one image's (1, rows, cols) patch grid (its canvas is the grid's pixels)."""
    t, rows, cols = (int(v) for v in np.asarray(grid_thw).reshape(-1))
    if t != 1 or min(rows, cols) < merge or rows % merge or cols % merge:
        want = f"(1, rows, cols) with rows and cols multiples of {merge}"
        raise InvalidArgumentError(expected("grid_thw", want, (t, rows, cols)))
    canvas = (rows * patch_size, cols * patch_size)
    return NativeGeometry(canvas, canvas, patch_size, merge)


def rotary_ids(geometry: NativeGeometry) -> np.ndarray:
    """[N, 2] int64 (row, col) of each patch in processor order."""
    rows, cols = np.divmod(geometry.patch_raster(), geometry.patch_grid[1])
    return np.stack([rows, cols], axis=1).astype(np.int64)


def _axis_taps(index: np.ndarray, size: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """[2, n] source rows floor / floor + 1 and their weights, align-corners, in float32."""
    source = index.astype(np.float32) * np.float32(side - 1) / np.float32(max(size - 1, 1))
    floor = np.floor(source)
    offsets = np.arange(2, dtype=np.float32)[:, None]
    taps = np.clip(floor.astype(np.int64)[None] + offsets.astype(np.int64), 0, side - 1)
    weights = np.clip(np.float32(1) - np.abs(source[None] - floor[None] - offsets), 0, None)
    return taps, weights.astype(np.float32)


def position_taps(geometry: NativeGeometry, side: int) -> tuple[np.ndarray, np.ndarray]:
    """[4, N] int64 corners in the side x side position table and [4, N] float32 weights.

    Corners are (top-left, top-right, bottom-left, bottom-right); a patch's embedding is the
    weighted sum of the four table rows. Patches are in processor order.
    """
    if side < 2:
        raise InvalidArgumentError(expected("position grid side", "at least 2", side))
    (rows, cols), ids = geometry.patch_grid, rotary_ids(geometry)
    h_taps, h_weights = _axis_taps(ids[:, 0], rows, side)
    w_taps, w_weights = _axis_taps(ids[:, 1], cols, side)
    index = h_taps[:, None] * side + w_taps[None, :]
    weight = h_weights[:, None] * w_weights[None, :]
    return index.reshape(4, -1), weight.reshape(4, -1).astype(np.float32)


def window_ids(geometry: NativeGeometry, window_size: int) -> np.ndarray:
    """[N] int64 the attention window of each patch of the window-ordered sequence."""
    side = window_size // geometry.patch_size // geometry.merge
    rows, cols = geometry.token_grid
    across = -(-cols // side)
    unit_window = (np.arange(rows)[:, None] // side) * across + np.arange(cols)[None] // side
    ordered = unit_window.reshape(-1)[window_index(geometry, window_size)]
    return np.repeat(ordered, geometry.merge**2).astype(np.int64)


def encoder_inputs(grid_thw: Sequence[int], spec: QwenEncoderSpec) -> dict[str, np.ndarray]:
    """Every grid-dependent graph input of one image, by input name (pixels excluded)."""
    geometry = grid_geometry(grid_thw, spec.patch_size, spec.merge)
    inputs = {ROTARY_IDS: rotary_ids(geometry)}
    if spec.windowed:
        inputs[WINDOW_INDEX] = window_index(geometry, spec.window_size)
        inputs[WINDOW_IDS] = window_ids(geometry, spec.window_size)
    else:
        inputs[POS_INDEX], inputs[POS_WEIGHT] = position_taps(geometry, spec.grid_side)
    return inputs
