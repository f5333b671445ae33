"""Token geometry of one image under a native-resolution model (Qwen3-VL, Qwen3.5, Qwen2.5-VL).

These models see the whole image at its own aspect ratio: the processor resizes it so both
sides are multiples of `patch x merge` with the pixel count inside [min_pixels, max_pixels]
(`smart_resize`), cuts it into `patch`-pixel patches and orders them merge block by merge block
(blocks row-major, the 2 x 2 patches of a block row-major inside it). The merger turns each
block (a *merge unit*) into one LLM token, so the LLM sees the merged grid in raster order.

HiRED's view is one partition whose N tokens are the merge units in raster order over the
merged grid (row-major, height x width after the merge); a unit's score is the sum over its
patches (`block_scores`). `NativeGeometry` answers the questions `ImageGeometry` answers for
LLaVA-1.5 (one partition, every token valid, no newlines), so `select_tokens` runs on it
unchanged: HiRED's phase 1 gives the partition the whole budget and phase 2 keeps the global
top-k. Qwen2.5-VL's encoder also permutes patches into attention-window order
(`window_index`); `unpermute_windows` brings a signal read inside the encoder back to the
stock order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_hired.errors import AttentionShapeError, InvalidArgumentError, expected

#: The aspect-ratio limit of the Qwen processors (a longer side over 200 x the shorter fails).
MAX_ASPECT = 200


def _round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves to even (Python's round)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        return quotient + 1
    return quotient


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The (height, width) the Qwen image processors resize an image to.

    Each side is rounded to a multiple of `factor` (= patch x merge); if the area then exceeds
    `max_pixels` both sides shrink by sqrt(area / max_pixels) and round down, if it falls under
    `min_pixels` they grow by sqrt(min_pixels / area) and round up. Never below one factor.
    """
    if min(height, width) < 1 or max(height, width) > MAX_ASPECT * min(height, width):
        want = f"sides >= 1 with an aspect ratio under {MAX_ASPECT}"
        raise InvalidArgumentError(expected("image size", want, (height, width)))
    h_bar = _round_half_even(height, factor) * factor
    w_bar = _round_half_even(width, factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class NativeGeometry:
    """How one image becomes patches and merge units under a native-resolution model.

    `canvas` is the (height, width) the processor resizes the image to; the patch grid is
    canvas / patch and the merged grid (the LLM's tokens) patch grid / merge.
    """

    image_size: tuple[int, int]
    canvas: tuple[int, int]
    patch_size: int
    merge: int

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of encoder patches."""
        return self.canvas[0] // self.patch_size, self.canvas[1] // self.patch_size

    @property
    def grid_thw(self) -> tuple[int, int, int]:
        """The processor's `image_grid_thw` row: (1, patch rows, patch cols)."""
        return (1, *self.patch_grid)

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of LLM tokens: the merged grid."""
        rows, cols = self.patch_grid
        return rows // self.merge, cols // self.merge

    @property
    def tokens_per_partition(self) -> int:
        """N: LLM tokens (merge units) of the image."""
        return self.token_grid[0] * self.token_grid[1]

    @property
    def num_tokens(self) -> int:
        """LLM tokens of the image in the stock model (one partition: N)."""
        return self.tokens_per_partition

    @property
    def num_patches(self) -> int:
        """Patch tokens the encoder sees (merge^2 per LLM token)."""
        return self.tokens_per_partition * self.merge * self.merge

    @property
    def grid(self) -> tuple[int, int]:
        """No sub-image grid: (0, 0), as LLaVA-1.5's single partition."""
        return (0, 0)

    @property
    def reported_grid(self) -> tuple[int, int]:
        """Grid as users see it: [1, 1]."""
        return (1, 1)

    @property
    def num_sub_images(self) -> int:
        """m = 0: one partition."""
        return 0

    @property
    def num_partitions(self) -> int:
        """1."""
        return 1

    @property
    def resized(self) -> None:
        """No grid shrink here (that is LLaVA-OneVision's); kept for the budget code."""
        return None

    def valid_mask(self) -> np.ndarray:
        """valid[0, t]: every merge unit is fed to the LLM."""
        return np.ones((1, self.tokens_per_partition), dtype=bool)

    def valid_counts(self) -> np.ndarray:
        """[N]: tokens of the one partition."""
        return self.valid_mask().sum(axis=1)

    def packing_order(self, kept: list[np.ndarray], newline: str = "none") -> np.ndarray:
        """Kept (0, token) rows in raster order, the stock order; no newline embeddings exist."""
        del newline
        tokens = np.sort(np.asarray(kept[0], dtype=np.int64))
        return np.stack([np.zeros_like(tokens), tokens], axis=1).reshape(-1, 2)

    def feature_scores(self, scores: np.ndarray) -> np.ndarray:
        """Per-token scores as the LLM-visible tokens carry them: unchanged here."""
        return scores

    def stock_index(self) -> np.ndarray:
        """[1, N] position of each raster token in the stock feature sequence (the identity).

        The merger emits merge units in block order, which is raster order over the merged
        grid; Qwen2.5-VL un-permutes its window order before it returns the features.
        """
        return np.arange(self.tokens_per_partition, dtype=np.int64).reshape(1, -1)

    def token_patches(self) -> np.ndarray:
        """[N, merge^2] stock-order patch indices of each token (its block, consecutive)."""
        unit = self.merge * self.merge
        return np.arange(self.num_patches, dtype=np.int64).reshape(-1, unit)

    def patch_raster(self) -> np.ndarray:
        """[patches] raster index (row x cols + col over the patch grid) of each stock patch."""
        (rows, cols), k = self.token_grid, self.merge
        r = (k * np.arange(rows))[:, None, None, None] + np.arange(k)[None, None, :, None]
        c = (k * np.arange(cols))[None, :, None, None] + np.arange(k)[None, None, None, :]
        return (r * self.patch_grid[1] + c).reshape(-1).astype(np.int64)

    def block_scores(self, patch_scores: np.ndarray) -> np.ndarray:
        """Sum a stock-order per-patch signal [..., patches] over each merge unit: [..., N].

        Leading axes (partitions, heads) are kept, so attention received [1, heads, patches]
        becomes token rows [1, heads, N] that `select_tokens` accepts. Summed in float32.
        """
        values = np.asarray(patch_scores)
        if values.ndim < 1 or values.shape[-1] != self.num_patches:
            shape = None if values.ndim < 1 else values.shape
            want = f"[..., {self.num_patches}] (stock patch order)"
            raise AttentionShapeError(expected("patch scores", want, shape))
        units = values.astype(np.float32).reshape(*values.shape[:-1], -1, self.merge**2)
        return units.sum(axis=-1, dtype=np.float32)


def native_geometry(
    image_size: tuple[int, int],
    patch_size: int = 16,
    merge: int = 2,
    min_pixels: int = 65536,
    max_pixels: int = 16777216,
) -> NativeGeometry:
    """The geometry of a (height, width) image under the processor's smart resize.

    Defaults are Qwen3-VL's and Qwen3.5's (patch 16, merge 2, 256^2 to 4096^2 pixels); Qwen2.5-VL
    uses patch 14 with 56^2 to 28^2 x 16384 pixels.
    """
    if patch_size < 1 or merge < 1:
        raise InvalidArgumentError(
            expected("patch / merge", "positive integers", (patch_size, merge))
        )
    if min_pixels < 1 or max_pixels < min_pixels:
        want = "1 <= min_pixels <= max_pixels"
        raise InvalidArgumentError(expected("pixel limits", want, (min_pixels, max_pixels)))
    height, width = (int(v) for v in image_size)
    canvas = smart_resize(height, width, patch_size * merge, min_pixels, max_pixels)
    return NativeGeometry((height, width), canvas, patch_size, merge)


def window_index(geometry: NativeGeometry, window_size: int = 112) -> np.ndarray:
    """[N] Qwen2.5-VL's window order: the raster merge unit at each position of the sequence.

    The encoder tiles the merged grid with square windows of window_size / patch / merge units
    (112 px / 14 / 2 = 4), windows row-major, units row-major inside a window; windows at the
    right and bottom edges are cut short. Patches follow their unit (merge^2 at a time).
    """
    side = window_size // geometry.patch_size // geometry.merge
    if side < 1:
        raise InvalidArgumentError(expected("window size", "at least one merge unit", window_size))
    rows, cols = geometry.token_grid
    raster = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    windows = [
        raster[r : r + side, c : c + side].reshape(-1)
        for r in range(0, rows, side)
        for c in range(0, cols, side)
    ]
    return np.concatenate(windows)


def window_patch_index(geometry: NativeGeometry, window_size: int = 112) -> np.ndarray:
    """[patches] the stock patch at each position of the window-ordered hidden states."""
    units = window_index(geometry, window_size)
    return geometry.token_patches()[units].reshape(-1)


def unpermute_windows(
    geometry: NativeGeometry, windowed: np.ndarray, window_size: int = 112
) -> np.ndarray:
    """A per-patch signal [..., patches] read in window order, put back in stock patch order."""
    values = np.asarray(windowed)
    if values.ndim < 1 or values.shape[-1] != geometry.num_patches:
        shape = None if values.ndim < 1 else values.shape
        raise AttentionShapeError(
            expected("windowed signal", f"[..., {geometry.num_patches}]", shape)
        )
    out = np.empty_like(values)
    out[..., window_patch_index(geometry, window_size)] = values
    return out
