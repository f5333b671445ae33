"""Token geometry of one image under a "tiles + global view" family (InternVL3/3.5, SmolVLM2).

Both families cut a resized copy of the whole image (the *canvas*, no padding) into a grid of
square tiles and add one more square image of the whole picture: InternVL's thumbnail and
SmolVLM's global image, always LAST in the stock pixel sequence. Each image goes through the
vision tower on its own; a pixel shuffle then merges every `merge x merge` block of patches into
one LLM token (InternVL: 2 x 2, SmolVLM: 4 x 4 or 3 x 3), in raster order of the blocks.

HiRED's view (HIRED.md) puts the whole image first: partition 0 is the global view (for an
InternVL image of one tile, that one tile), partitions 1..m are the tiles, row-major. A token is
one patch block; `block_scores` turns per-patch signals into per-token ones. `TileGeometry`
answers the questions `ImageGeometry` answers for LLaVA (partition sizes, valid tokens, which
tile covers a global-view token, packing order), so HiRED's budget code runs on it unchanged,
plus the stock order the model packs tokens in and each tile's region of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_hired.errors import AttentionShapeError, InvalidArgumentError, expected
from edge_hired.hired.geometry import PartitionGrid

TileFamily = Literal["internvl", "smolvlm"]


@dataclass(frozen=True)
class TileGeometry(PartitionGrid):
    """How one image becomes tiles, a global view and LLM tokens.

    `grid` is (rows, cols) of tiles, (0, 0) when the image is a single view (InternVL with one
    tile, SmolVLM without splitting). `canvas` is the (height, width) of the resized image the
    tiles are cut from (the single view's size when there are no tiles).
    """

    family: TileFamily
    image_size: tuple[int, int]
    tile_size: int
    patch_size: int
    merge: int
    grid: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def patch_side(self) -> int:
        """Patches per tile side, floored (448/14 = 32, 512/16 = 32, 384/14 = 27)."""
        return self.tile_size // self.patch_size

    @property
    def n_side(self) -> int:
        """LLM tokens per tile side: patch_side / merge (16, 8 or 9)."""
        return self.patch_side // self.merge

    @property
    def tokens_per_partition(self) -> int:
        """N: LLM tokens of one tile or of the global view (256, 64 or 81)."""
        return self.n_side * self.n_side

    @property
    def patches_per_partition(self) -> int:
        """Patch tokens the tower emits per image, CLS excluded (1024, 1024 or 729)."""
        return self.patch_side * self.patch_side

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of LLM tokens in every partition."""
        return self.n_side, self.n_side

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of encoder patches in every partition."""
        return self.patch_side, self.patch_side

    @property
    def resized(self) -> None:
        """No grid shrink here (that is LLaVA-OneVision's); kept for the budget code."""
        return None

    @property
    def num_tokens(self) -> int:
        """LLM tokens of the whole image in the stock model: (1 + m) x N."""
        return self.num_partitions * self.tokens_per_partition

    def valid_mask(self) -> np.ndarray:
        """valid[p, t]: every token is fed to the LLM (these families have no padding)."""
        return np.ones((self.num_partitions, self.tokens_per_partition), dtype=bool)

    def valid_counts(self) -> np.ndarray:
        """Tokens per partition."""
        return self.valid_mask().sum(axis=1)

    def stock_partitions(self) -> np.ndarray:
        """The partition of each image in the stock pixel sequence: tiles 1..m, then 0."""
        return np.array([*range(1, self.num_partitions), 0], dtype=np.int64)

    def stock_order(self) -> np.ndarray:
        """[(1 + m) x N, 2] (partition, token) in the order the stock model feeds the LLM."""
        n = self.tokens_per_partition
        parts = np.repeat(self.stock_partitions(), n)
        return np.stack([parts, np.tile(np.arange(n), self.num_partitions)], 1).astype(np.int64)

    def stock_index(self) -> np.ndarray:
        """[P, N] position of each (partition, token) in the stock feature sequence."""
        order = self.stock_order()
        table = np.empty((self.num_partitions, self.tokens_per_partition), dtype=np.int64)
        table[order[:, 0], order[:, 1]] = np.arange(len(order))
        return table

    def packing_order(self, kept: list[np.ndarray], newline: str = "none") -> np.ndarray:
        """Kept (partition, token) rows in the stock order: tiles row-major, global view last.

        These families put no newline embeddings between rows (their row markers are prompt
        text), so `newline` is accepted for the budget code's sake and ignored.
        """
        del newline
        rows = [
            np.stack([np.full(len(kept[p]), p), np.asarray(kept[p])], axis=1)
            for p in self.stock_partitions()
        ]
        return np.concatenate(rows).astype(np.int64).reshape(-1, 2)

    def feature_scores(self, scores: np.ndarray) -> np.ndarray:
        """Per-token scores as the LLM-visible tokens carry them: unchanged here."""
        return scores

    def full_to_sub_image(self) -> np.ndarray:
        """For each global-view token (raster), the tile (1..m) whose region holds its centre.

        The global view and the canvas both show the whole image without padding, so a token
        centre at ((c + 0.5) / n, (r + 0.5) / n) of the image lies in tile row
        floor((r + 0.5) / n x rows) (exact integer arithmetic, no rounding at tile borders).
        """
        if not self.num_sub_images:
            raise InvalidArgumentError("full_to_sub_image: the image has no tiles")
        n, (rows, cols) = self.n_side, self.grid
        centres = 2 * np.arange(n) + 1
        tile_row, tile_col = (centres * rows) // (2 * n), (centres * cols) // (2 * n)
        return (1 + tile_row[:, None] * cols + tile_col[None, :]).reshape(-1).astype(np.int64)

    def token_patches(self) -> np.ndarray:
        """[N, merge^2] raster patch indices of each token's block (row-major inside the block).

        This is the pixel shuffle's grouping: token (i, j) holds patches (merge*i + a,
        merge*j + b) for a, b in 0..merge-1, its channels ordered by (a, b).
        """
        k, n, side = self.merge, self.n_side, self.patch_side
        rows = (k * np.arange(n))[:, None, None, None] + np.arange(k)[None, None, :, None]
        cols = (k * np.arange(n))[None, :, None, None] + np.arange(k)[None, None, None, :]
        return (rows * side + cols).reshape(n * n, k * k).astype(np.int64)

    def block_scores(self, patch_scores: np.ndarray) -> np.ndarray:
        """Sum a per-patch signal [..., patches] over each token's block: [..., N], float32.

        Leading axes (partitions, heads) are kept, so CLS rows [P, heads, 1024] become token
        rows [P, heads, 256] that `select_tokens` accepts.
        """
        values = np.asarray(patch_scores)
        side, k, n = self.patch_side, self.merge, self.n_side
        if values.ndim < 1 or values.shape[-1] != side * side:
            shape = None if values.ndim < 1 else values.shape
            raise AttentionShapeError(expected("patch scores", f"[..., {side * side}]", shape))
        blocks = values.astype(np.float32).reshape(*values.shape[:-1], n, k, n, k)
        return blocks.sum(axis=(-3, -1), dtype=np.float32).reshape(*values.shape[:-1], n * n)

    def canvas_boxes(self) -> np.ndarray:
        """[P, 4] (top, left, bottom, right) of each partition's pixels on the canvas.

        Partition 0 (the global view) covers the whole canvas; tile (r, c) is the tile-sized
        square at (r x tile, c x tile), exactly the crop the image processor takes.
        """
        t, (rows, cols) = self.tile_size, self.grid
        boxes = [(0, 0, *self.canvas)]
        boxes += [
            (r * t, c * t, (r + 1) * t, (c + 1) * t) for r in range(rows) for c in range(cols)
        ]
        return np.array(boxes, dtype=np.int64)

    def global_view_boxes(self) -> np.ndarray:
        """[P, 4] float (top, left, bottom, right) of each partition on the global view's pixels.

        The global view squashes the whole canvas into one tile, so tile (r, c) of a rows x cols
        grid covers [r / rows, (r + 1) / rows) x [c / cols, (c + 1) / cols) of it: the region
        whose layer-0 signal decides the tile's share of the budget.
        """
        scale = self.tile_size / np.array(self.canvas, dtype=np.float64)
        return self.canvas_boxes() * np.tile(scale, 2)

    def image_regions(self) -> np.ndarray:
        """[P, 4] float (top, left, bottom, right) of each partition in original-image pixels."""
        scale = np.array([self.image_size[0] / self.canvas[0], self.image_size[1] / self.canvas[1]])
        return self.canvas_boxes() * np.tile(scale, 2)


def check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """Validate (height, width) as positive integers."""
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise InvalidArgumentError(expected("image size", "(height, width) >= 1", image_size))
    return int(image_size[0]), int(image_size[1])


def check_tiling(tile_size: int, patch_size: int, merge: int) -> None:
    """A tile holds at least one patch, and the patch grid whole merge blocks.

    The patch grid is floor(tile / patch) per side, as a stride-`patch` convolution sees it
    (384 / 14 = 27 for SmolVLM2-2.2B; the last 6 pixel rows and columns reach no patch).
    """
    if patch_size < 1 or tile_size < patch_size:
        raise InvalidArgumentError(
            expected(
                "tile / patch size", "a patch no larger than the tile", (tile_size, patch_size)
            )
        )
    if merge < 1 or (tile_size // patch_size) % merge:
        raise InvalidArgumentError(
            expected("pixel-shuffle merge", f"a divisor of {tile_size // patch_size}", merge)
        )
