"""The model shapes the planner reads (language model, vision encoder) and their image layouts."""

from __future__ import annotations

from dataclasses import dataclass

from edge_hired.hired.geometry import (
    ImageGeometry,
    anyres_geometry,
    onevision_geometry,
    single_geometry,
)
from edge_hired.hired.internvl_tiles import candidate_grids, internvl_geometry
from edge_hired.hired.native_geometry import native_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.hired.tiles import TileGeometry
from edge_hired.units import dtype_bytes

#: The largest image a native-resolution plan assumes unless told: 1344 x 1344 px (1,764 tokens
#: on Qwen3-VL), the cap a deployment on an 8 GB board sets with the processor's `max_pixels`;
#: the hub processors allow up to 16.7 Mpx (16,384 tokens), which no 8 GB board holds.
PLAN_MAX_PIXELS = 1344 * 1344
#: Tiled families (model_type -> tiling rules): a grid of tiles plus a global view.
TILED_LAYOUTS = {"internvl": "internvl", "smolvlm": "smolvlm", "idefics3": "smolvlm"}


@dataclass(frozen=True)
class LlmShape:
    """What the planner needs of the language model's shape."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    #: One sequence's linear-attention state (Qwen3.5's Gated-DeltaNet layers: conv and
    #: recurrent state), the same size at any length: a fixed cost per request, not per token.
    linear_state_bytes: int = 0

    def kv_bytes_per_token(self, dtype: str) -> int:
        """2 (keys and values) x layers x KV heads x head dim x dtype bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes(dtype)


@dataclass(frozen=True)
class VisionShape:
    """What the planner needs of the vision encoder and its image geometry."""

    layers_run: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    crop_size: int
    patch_size: int
    family: str  # "llava_next", "llava" or "llava_onevision"
    pinpoints: tuple[tuple[int, int], ...] = ()
    has_cls: bool = True  # CLIP carries a CLS token, SigLIP does not
    max_tiles: int = 0  # OneVision's anyres_max_K; InternVL's max_patches
    merge: int = 0  # native resolution (Qwen-VL): merge units are merge x merge patches; else 0
    min_pixels: int = 0  # native resolution: the processor's pixel limits
    max_pixels: int = 0
    tile_merge: int = 1  # tiled families: patches per LLM-token side (pixel shuffle)
    min_tiles: int = 1  # InternVL's min_patches
    longest_edge: int = 0  # SmolVLM's size.longest_edge (the first resize)
    #: Native bundles: the ONNX graph's attention query chunks (one block's scores are
    #: heads x ceil(N / chunks) x N); 0: attention never holds its scores (in-process SDPA).
    attention_query_chunks: int = 0
    window_size: int = 0  # Qwen2.5-VL's attention windows in pixels: masked blocks hold more

    @property
    def tokens_per_partition(self) -> int:
        """Tokens the encoder sees per partition: patches (plus CLS where the tower has one).

        Native resolution: the patches of the largest image, merge^2 per LLM token.
        """
        if self.merge:
            return native_max_tokens(self) * self.merge**2
        return (self.crop_size // self.patch_size) ** 2 + int(self.has_cls)


def attention_scores(vision: VisionShape) -> int:
    """Scores one block of an exported native graph holds at once: heads x query rows of one
    chunk x keys, N = the largest image's patches (0 where attention never holds them)."""
    if not vision.attention_query_chunks:
        return 0
    patches = vision.tokens_per_partition
    rows = -(-patches // vision.attention_query_chunks)
    return vision.num_heads * rows * patches


def native_max_tokens(vision: VisionShape) -> int:
    """LLM tokens of the largest image under `max_pixels`: at most max_pixels / factor^2, since
    `smart_resize` keeps the canvas within the cap (one image, one partition)."""
    return vision.max_pixels // (vision.patch_size * vision.merge) ** 2


def image_geometry(vision: VisionShape, image_hw: tuple[int, int]) -> ImageGeometry:
    """Token geometry of an image of (height, width) under the model's layout."""
    crop, patch = vision.crop_size, vision.patch_size
    if vision.merge:
        limits = vision.min_pixels, vision.max_pixels
        return native_geometry(image_hw, patch, vision.merge, *limits)  # type: ignore[return-value]
    if vision.family in TILED_LAYOUTS:
        return tiled_geometry(vision, image_hw)
    if vision.family == "llava_onevision" and vision.pinpoints:
        return onevision_geometry(image_hw, vision.pinpoints, crop, patch, vision.max_tiles)
    if vision.family == "llava_next" and vision.pinpoints:
        return anyres_geometry(image_hw, vision.pinpoints, crop, patch)
    return single_geometry(image_hw, crop, patch)


def max_geometry(vision: VisionShape) -> tuple[int, int]:
    """(partitions, valid visual tokens) of the largest layout: an image shaped like a pinpoint.

    Native resolution: one partition of `native_max_tokens`.
    """
    if vision.merge:
        return 1, native_max_tokens(vision)
    if vision.family in TILED_LAYOUTS:
        return tiled_max_geometry(vision)
    if vision.family == "llava" or not vision.pinpoints:
        single = single_geometry((vision.crop_size,) * 2, vision.crop_size, vision.patch_size)
        return 1, single.tokens_per_partition
    best = (0, 0)
    for pin in vision.pinpoints:
        geometry = image_geometry(vision, pin)
        best = max(best, (geometry.num_partitions, int(geometry.valid_counts().sum())))
    return best


def tiled_geometry(vision: VisionShape, image_hw: tuple[int, int]) -> TileGeometry:
    """InternVL / SmolVLM geometry of an image (the image processor's settings in `vision`)."""
    tile, patch, merge = vision.crop_size, vision.patch_size, vision.tile_merge
    if TILED_LAYOUTS[vision.family] == "internvl":
        tiles = (vision.min_tiles, vision.max_tiles)
        return internvl_geometry(image_hw, tile, patch, 1 / merge, *tiles)
    return smolvlm_geometry(image_hw, tile, patch, merge, vision.longest_edge or 4 * tile)


def tiled_max_geometry(vision: VisionShape) -> tuple[int, int]:
    """(partitions, LLM tokens) of the most tiles: every InternVL grid, SmolVLM's square image."""
    tile = vision.crop_size
    if TILED_LAYOUTS[vision.family] == "internvl":
        grids = candidate_grids(vision.min_tiles, vision.max_tiles)
        sizes = [(rows * tile, cols * tile) for cols, rows in grids]
    else:
        sizes = [(vision.longest_edge or 4 * tile,) * 2]
    layouts = [tiled_geometry(vision, size) for size in sizes]
    return max((g.num_partitions, g.num_tokens) for g in layouts)


def llm_matmul_params(llm: LlmShape) -> int:
    """Llama-style Linear parameters: q, k, v, o, gate, up, down per layer, plus lm_head."""
    attention = 2 * llm.hidden_size * llm.num_heads * llm.head_dim
    attention += 2 * llm.hidden_size * llm.num_kv_heads * llm.head_dim
    per_layer = attention + 3 * llm.hidden_size * llm.intermediate_size
    return llm.num_layers * per_layer + llm.hidden_size * llm.vocab_size


def vision_matmul_params(vision: VisionShape) -> int:
    """CLIP Linear parameters of the layers that run."""
    hidden = vision.hidden_size
    return vision.layers_run * (4 * hidden * hidden + 2 * hidden * vision.intermediate_size)
