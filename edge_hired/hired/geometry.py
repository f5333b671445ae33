"""Token geometry of one image under LLaVA-NeXT anyres (or LLaVA-1.5's single partition).

HiRED works on partition-local token indices, while the LLM sees tokens in the order transformers'
`pack_image_features` produces after stitching and unpadding the sub-image grid. This module
derives both from the image size and the processor configuration alone, re-deriving the
processor's arithmetic (best resolution, aspect-preserving resize, centred padding, unpadding) so
that the HiRED core needs no torch and no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_hired.errors import InvalidArgumentError, expected

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


@dataclass(frozen=True)
class ImageGeometry:
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

    @property
    def tokens_per_partition(self) -> int:
        """N: patch tokens per partition."""
        return self.n_side * self.n_side

    @property
    def num_sub_images(self) -> int:
        """m: number of sub-images (0 for LLaVA-1.5)."""
        return self.grid[0] * self.grid[1]

    @property
    def num_partitions(self) -> int:
        """1 + m."""
        return 1 + self.num_sub_images

    @property
    def reported_grid(self) -> tuple[int, int]:
        """Grid as users see it: [1, 1] for one partition."""
        return self.grid if self.num_sub_images else (1, 1)

    def valid_mask(self) -> np.ndarray:
        """valid[p, t]: whether token t of partition p survives unpadding."""
        n = self.n_side
        mask = np.ones((self.num_partitions, n * n), dtype=bool)
        if not self.num_sub_images:
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

    def stitched_order(self) -> np.ndarray:
        """(partition, token) of every valid sub-image token, in the stitched raster order.

        Shape [rows_kept * cols_kept, 2]; the LLM sees sub-image tokens in this order.
        """
        n, gw = self.n_side, self.grid[1]
        rows = np.arange(self.rows_kept.start, self.rows_kept.stop)
        cols = np.arange(self.cols_kept.start, self.cols_kept.stop)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        part = 1 + (rr // n) * gw + (cc // n)
        token = (rr % n) * n + (cc % n)
        return np.stack([part.reshape(-1), token.reshape(-1)], axis=1)

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
        order = self.stitched_order().reshape(len(self.rows_kept), len(self.cols_kept), 2)
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
    """n = crop_size / patch_size, which must divide exactly."""
    if patch_size < 1 or crop_size % patch_size:
        raise InvalidArgumentError(
            expected("crop size / patch size", "an exact multiple", (crop_size, patch_size))
        )
    return crop_size // patch_size
