"""Token geometry of one image under LLaVA-NeXT / LLaVA-OneVision anyres, or one partition.

HiRED works on partition-local token indices, while the LLM sees tokens in the order transformers'
`pack_image_features` produces after stitching and unpadding the sub-image grid. This module
derives both from the image size and the processor configuration alone, re-deriving the
processor's arithmetic (best resolution, aspect-preserving resize, centred padding, unpadding) so
that the HiRED core needs no torch and no model.

LLaVA-OneVision (`anyres_max_K`) also shrinks a stitched grid larger than K tiles with a bilinear
resize. Each position of the shrunken grid is then represented by the partition-local token whose
cell holds the position's centre (its *anchor*: one token per position, never shared), so budgets,
selection and packing keep working on (partition, token) pairs; `sub_taps` says which source
tokens a position interpolates, and `feature_scores` resizes score maps the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.resize import Taps, bilinear, centre_sources, linear_taps

NEWLINE = -1
"""Marker in a packing order for the model's `image_newline` embedding."""

NewlineMode = Literal["none", "rows", "stock"]

LLAVA_V16_PINPOINTS: tuple[tuple[int, int], ...] = (
    (336, 672),
    (672, 336),
    (672, 672),
    (1008, 336),
    (336, 1008),
)


def select_best_resolution(
    image_size: tuple[int, int], pinpoints: tuple[tuple[int, int], ...]
) -> tuple[int, int]:
    """The pinpoint (height, width) that keeps most of the image and wastes least canvas."""
    height, width = image_size
    best, best_effective, best_waste = pinpoints[0], -1, math.inf
    for pin_h, pin_w in pinpoints:
        scale = min(pin_w / width, pin_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = pin_w * pin_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (pin_h, pin_w), effective, waste
    return best


def resized_size(image_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Size (h, w) of the image after the processor's aspect-preserving resize into target."""
    height, width = image_size
    target_h, target_w = target
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def unpadded_span(image_size: tuple[int, int], grid_hw: tuple[int, int]) -> tuple[range, range]:
    """Stitched token rows and columns that survive the model's unpadding."""
    height, width = image_size
    cur_h, cur_w = grid_hw
    if width / height > cur_w / cur_h:
        new_h = int(round(height * (cur_w / width), 7))
        pad = (cur_h - new_h) // 2
        return range(pad, cur_h - pad), range(cur_w)
    new_w = int(round(width * (cur_h / height), 7))
    pad = (cur_w - new_w) // 2
    return range(cur_h), range(pad, cur_w - pad)


class PartitionGrid:
    """What a (rows, cols) `grid` of sub-images plus one full view says about partitions.

    Shared by every layout HiRED partitions: LLaVA's anyres grid, the tiled families' tiles.
    """

    grid: tuple[int, int]

    @property
    def num_sub_images(self) -> int:
        """m: number of sub-images or tiles (0 for a single view)."""
        return self.grid[0] * self.grid[1]

    @property
    def num_partitions(self) -> int:
        """1 + m: the full view and the sub-images."""
        return 1 + self.num_sub_images

    @property
    def reported_grid(self) -> tuple[int, int]:
        """Grid as users see it: [1, 1] for one partition."""
        return self.grid if self.num_sub_images else (1, 1)


@dataclass(frozen=True)
class ImageGeometry(PartitionGrid):
    """Everything HiRED needs to know about how one image becomes visual tokens.

    Partition 0 is the full image; partitions 1..m are the sub-images in row-major grid order.
    `grid` is (0, 0) for a single-partition model (LLaVA-1.5).
    """

    image_size: tuple[int, int]
    n_side: int
    crop_size: int
    grid: tuple[int, int]
    best_resolution: tuple[int, int] | None = None
    rows_kept: range = range(0)
    cols_kept: range = range(0)
    resized: tuple[int, int] | None = None  # OneVision: the shrunken grid (rows, cols), if any

    @property
    def tokens_per_partition(self) -> int:
        """N: patch tokens per partition."""
        return self.n_side * self.n_side

    def valid_mask(self) -> np.ndarray:
        """valid[p, t]: whether token t of partition p survives unpadding."""
        n = self.n_side
        mask = np.ones((self.num_partitions, n * n), dtype=bool)
        if not self.num_sub_images:
            return mask
        if self.resized is not None:
            mask[1:] = False
            order = self.stitched_order()
            mask[order[:, 0], order[:, 1]] = True
            return mask
        rows = np.zeros(self.grid[0] * n, dtype=bool)
        rows[self.rows_kept.start : self.rows_kept.stop] = True
        cols = np.zeros(self.grid[1] * n, dtype=bool)
        cols[self.cols_kept.start : self.cols_kept.stop] = True
        stitched = rows[:, None] & cols[None, :]
        tiles = stitched.reshape(self.grid[0], n, self.grid[1], n).transpose(0, 2, 1, 3)
        mask[1:] = tiles.reshape(self.num_sub_images, n * n)
        return mask

    def valid_counts(self) -> np.ndarray:
        """Number of valid tokens per partition."""
        return self.valid_mask().sum(axis=1)

    def full_to_sub_image(self) -> np.ndarray:
        """For each full-image patch (raster order), the sub-image (1..m) covering its centre."""
        if not self.num_sub_images:
            raise InvalidArgumentError("full_to_sub_image: the image has no sub-images")
        n, (height, width) = self.n_side, self.image_size
        new_h, new_w = resized_size(self.image_size, self.best_resolution)
        pad_y = (self.best_resolution[0] - new_h) // 2
        pad_x = (self.best_resolution[1] - new_w) // 2
        centres = (np.arange(n) + 0.5) / n
        y = centres * height * (new_h / height) + pad_y
        x = centres * width * (new_w / width) + pad_x
        row = np.minimum((y // self.crop_size).astype(int), self.grid[0] - 1)
        col = np.minimum((x // self.crop_size).astype(int), self.grid[1] - 1)
        return (1 + row[:, None] * self.grid[1] + col[None, :]).reshape(-1)

    def visible_grid(self) -> tuple[int, int]:
        """(rows, cols) of the sub-image grid the LLM sees: unpadded, then shrunk if resized."""
        if self.resized is not None:
            return self.resized
        return len(self.rows_kept), len(self.cols_kept)

    def stitched_order(self) -> np.ndarray:
        """(partition, token) of every visible sub-image position, in the stitched raster order.

        Shape [rows * cols of `visible_grid`, 2]; the LLM sees sub-image tokens in this order. For
        a resized grid each row is the position's anchor token.
        """
        rows, cols = self._visible_rows(), self._visible_cols()
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return self.stitched_to_token(rr.reshape(-1), cc.reshape(-1))

    def stitched_to_token(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """[K, 2] (partition, token) of stitched-grid cells (row, col) (padded coordinates)."""
        n, gw = self.n_side, self.grid[1]
        part = 1 + (rows // n) * gw + (cols // n)
        return np.stack([part, (rows % n) * n + (cols % n)], axis=1).astype(np.int64)

    def _visible_rows(self) -> np.ndarray:
        """Stitched rows of the visible positions (anchor rows when resized)."""
        start, count = self.rows_kept.start, len(self.rows_kept)
        if self.resized is None:
            return np.arange(start, start + count)
        return start + centre_sources(count, self.resized[0])

    def _visible_cols(self) -> np.ndarray:
        """Stitched columns of the visible positions (anchor columns when resized)."""
        start, count = self.cols_kept.start, len(self.cols_kept)
        if self.resized is None:
            return np.arange(start, start + count)
        return start + centre_sources(count, self.resized[1])

    def axis_taps(self) -> tuple[Taps, Taps]:
        """Bilinear taps of the resize along rows and columns (unpadded coordinates)."""
        if self.resized is None:
            raise InvalidArgumentError("axis_taps: the sub-image grid is not resized")
        return (
            linear_taps(len(self.rows_kept), self.resized[0]),
            linear_taps(len(self.cols_kept), self.resized[1]),
        )

    def sub_taps(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the given visible positions (raster indices) interpolate.

        Returns sources [K, 4, 2] (partition, token) in corner order (y0x0, y0x1, y1x0, y1x1)
        and float32 weights [K, 2] along y and [K, 2] along x, for `resize.blend`.
        """
        ty, tx = self.axis_taps()
        i, j = np.divmod(np.asarray(positions, dtype=np.int64), self.resized[1])
        r0, c0 = self.rows_kept.start, self.cols_kept.start
        ys = (ty.low[i] + r0, ty.low[i] + r0, ty.high[i] + r0, ty.high[i] + r0)
        xs = (tx.low[j] + c0, tx.high[j] + c0, tx.low[j] + c0, tx.high[j] + c0)
        sources = np.stack([self.stitched_to_token(y, x) for y, x in zip(ys, xs, strict=True)], 1)
        weights_y = np.stack([ty.w_low[i], ty.w_high[i]], axis=1)
        return sources, weights_y, np.stack([tx.w_low[j], tx.w_high[j]], axis=1)

    def position_index(self) -> np.ndarray:
        """[P, N] raster index of the visible position each token anchors, -1 where none."""
        table = np.full((self.num_partitions, self.tokens_per_partition), -1, dtype=np.int64)
        order = self.stitched_order()
        table[order[:, 0], order[:, 1]] = np.arange(len(order))
        return table

    def feature_scores(self, scores: np.ndarray) -> np.ndarray:
        """Per-token scores [P, N] as the LLM-visible positions carry them.

        Unchanged unless the grid is resized; then the sub-image scores are stitched, unpadded and
        resized exactly like the features, and each position's value is put on its anchor token.
        """
        if self.resized is None or not self.num_sub_images:
            return scores
        n, (gh, gw) = self.n_side, self.grid
        stitched = scores[1:].reshape(gh, gw, n, n).transpose(0, 2, 1, 3).reshape(gh * n, gw * n)
        unpadded = stitched[self.rows_kept.start : self.rows_kept.stop][
            :, self.cols_kept.start : self.cols_kept.stop
        ]
        out = np.array(scores, dtype=np.float32, copy=True)
        order = self.stitched_order()
        out[order[:, 0], order[:, 1]] = bilinear(unpadded, self.resized).reshape(-1)
        return out

    def packing_order(self, kept: list[np.ndarray], newline: NewlineMode) -> np.ndarray:
        """Order of the visual tokens the LLM receives, as [L, 2] (partition, token) rows.

        Newline positions are rows of (NEWLINE, NEWLINE). "stock" puts a newline after every
        unpadded stitched row (what transformers does), "rows" after each stitched row that kept
        a token, "none" puts none. A single-partition model never has newlines.
        """
        full = np.stack([np.zeros(len(kept[0]), dtype=np.int64), kept[0]], axis=1)
        if not self.num_sub_images:
            return full.astype(np.int64)
        rows = [full]
        order = self.stitched_order().reshape(*self.visible_grid(), 2)
        keep = self._kept_lookup(kept)
        for row in order:
            chosen = row[keep[row[:, 0], row[:, 1]]]
            rows.append(chosen)
            if newline == "stock" or (newline == "rows" and len(chosen)):
                rows.append(np.full((1, 2), NEWLINE))
        return np.concatenate(rows).astype(np.int64)

    def _kept_lookup(self, kept: list[np.ndarray]) -> np.ndarray:
        """Boolean [P, N] table of kept tokens."""
        table = np.zeros((self.num_partitions, self.tokens_per_partition), dtype=bool)
        for part, indices in enumerate(kept):
            table[part, indices] = True
        return table


def anyres_geometry(
    image_size: tuple[int, int],
    pinpoints: tuple[tuple[int, int], ...] | list[list[int]] = LLAVA_V16_PINPOINTS,
    crop_size: int = 336,
    patch_size: int = 14,
) -> ImageGeometry:
    """Geometry of a LLaVA-NeXT image of size (height, width)."""
    height, width = _check_image_size(image_size)
    pins = tuple((int(h), int(w)) for h, w in pinpoints)
    if not pins:
        raise InvalidArgumentError(expected("grid pinpoints", "at least one (height, width)", pins))
    best = select_best_resolution((height, width), pins)
    grid = (best[0] // crop_size, best[1] // crop_size)
    n = _patches_per_side(crop_size, patch_size)
    rows, cols = unpadded_span((height, width), (grid[0] * n, grid[1] * n))
    return ImageGeometry((height, width), n, crop_size, grid, best, rows, cols)


def onevision_geometry(
    image_size: tuple[int, int],
    pinpoints: tuple[tuple[int, int], ...] | list[list[int]],
    crop_size: int = 384,
    patch_size: int = 14,
    max_tiles: int = 9,
) -> ImageGeometry:
    """Geometry of a LLaVA-OneVision image (`anyres_max_{max_tiles}`) of size (height, width).

    As LLaVA-NeXT, then, when the unpadded grid holds more than max_tiles tiles' worth of tokens
    (ratio > 1.1), the grid shrinks to (int(rows // ratio), int(cols // ratio)) as transformers'
    `pack_image_features` computes it.
    """
    if max_tiles < 1:
        raise InvalidArgumentError(expected("anyres_max tiles", "an integer >= 1", max_tiles))
    base = anyres_geometry(image_size, pinpoints, crop_size, patch_size)
    rows, cols = len(base.rows_kept), len(base.cols_kept)
    ratio = math.sqrt(rows * cols / (max_tiles * base.n_side**2))
    if ratio <= 1.1:
        return base
    return replace(base, resized=(int(rows // ratio), int(cols // ratio)))


def single_geometry(
    image_size: tuple[int, int], crop_size: int = 336, patch_size: int = 14
) -> ImageGeometry:
    """Geometry of a one-partition model (LLaVA-1.5): N tokens, all valid, no newlines."""
    size = _check_image_size(image_size)
    return ImageGeometry(size, _patches_per_side(crop_size, patch_size), crop_size, (0, 0))


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """Validate (height, width) as positive integers."""
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise InvalidArgumentError(expected("image size", "(height, width) >= 1", image_size))
    return int(image_size[0]), int(image_size[1])


def _patches_per_side(crop_size: int, patch_size: int) -> int:
    """n = floor(crop_size / patch_size), as a stride-`patch` convolution sees it (384/14 = 27)."""
    if patch_size < 1 or crop_size < patch_size:
        raise InvalidArgumentError(
            expected(
                "crop size / patch size", "a patch no larger than the crop", (crop_size, patch_size)
            )
        )
    return crop_size // patch_size
