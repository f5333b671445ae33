"""What the ONNX Qwen-VL encoder needs to know of its tower, and the names of its graph's ports.

One image of any size runs through one exported graph: the grid-dependent inputs (rotary ids,
learned-position taps, Qwen2.5-VL's window order) are computed on the host from the patch grid
and a handful of config facts. `QwenEncoderSpec` holds those facts; the exporter reads them from
the vision config and the bundle's manifest carries them, so the runtime infers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_hired.errors import InvalidArgumentError, expected

#: Families whose tower this graph reproduces (the config's model_type).
QWEN_ENCODER_FAMILIES = ("qwen3_vl", "qwen2_5_vl", "qwen3_5")

PIXELS = "pixel_values"  # [N, C x T x p x p] the processor's flattened patches
ROTARY_IDS = "rotary_ids"  # [N, 2] int64 (row, col) of each patch
POS_INDEX = "pos_index"  # [4, N] int64 bilinear corners in the learned position table
POS_WEIGHT = "pos_weight"  # [4, N] float32 their weights
WINDOW_INDEX = "window_index"  # [U] int64 raster merge unit at each window-order slot
WINDOW_IDS = "window_ids"  # [N] int64 window of each patch, in window order

FEATURES = "features"  # [U, D] merged features, stock (raster) order
RECEIVED = "received_attn_final"  # [heads, N] float32 attention received, stock patch order
DEEPSTACK_PREFIX = "deepstack_"  # deepstack_0, deepstack_1, ...: [U, D] each (Qwen3-VL)


@dataclass(frozen=True)
class QwenEncoderSpec:
    """The tower facts the host needs to feed the graph and to read its outputs.

    `grid_side` is the learned position grid's side (0: none, Qwen2.5-VL); `window_size` is
    Qwen2.5-VL's attention window in pixels (0: full attention everywhere).
    """

    family: str
    patch_size: int
    merge: int
    grid_side: int
    window_size: int
    num_deepstack: int
    signal_block: int
    num_heads: int

    @property
    def windowed(self) -> bool:
        """Whether some blocks attend inside windows (Qwen2.5-VL)."""
        return self.window_size > 0

    @property
    def input_names(self) -> tuple[str, ...]:
        """The graph's inputs, in order."""
        extra = (WINDOW_INDEX, WINDOW_IDS) if self.windowed else (POS_INDEX, POS_WEIGHT)
        return (PIXELS, ROTARY_IDS, *extra)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph's outputs, in order: features, DeepStack layers, the signal."""
        return (FEATURES, *deepstack_names(self.num_deepstack), RECEIVED)

    @classmethod
    def from_config(cls, vision_config: Any, block: int | None = None) -> QwenEncoderSpec:
        """The spec of a Qwen-VL vision config; `block` defaults to the signal block."""
        from edge_hired.runtime.qwen_vision import signal_block  # torch: only where configs are

        family = str(vision_config.model_type).removesuffix("_vision")
        if family not in QWEN_ENCODER_FAMILIES:
            raise InvalidArgumentError(expected("vision model type", QWEN_ENCODER_FAMILIES, family))
        positions = getattr(vision_config, "num_position_embeddings", None) or 0
        window = getattr(vision_config, "window_size", None) or 0
        full = getattr(vision_config, "fullatt_block_indexes", None)
        depth = int(vision_config.depth)
        chosen = signal_block(vision_config) if block is None else block
        if not 0 <= chosen < depth or (window and chosen not in full):
            want = "a full-attention block index" if window else f"a block index in 0..{depth - 1}"
            raise InvalidArgumentError(expected("signal block", want, chosen))
        return cls(
            family=family,
            patch_size=int(vision_config.patch_size),
            merge=int(vision_config.spatial_merge_size),
            grid_side=int(positions**0.5),
            window_size=int(window),
            num_deepstack=len(getattr(vision_config, "deepstack_visual_indexes", None) or ()),
            signal_block=int(chosen),
            num_heads=int(vision_config.num_heads),
        )


def deepstack_names(count: int) -> tuple[str, ...]:
    """Output names of `count` DeepStack layers."""
    return tuple(f"{DEEPSTACK_PREFIX}{i}" for i in range(count))
