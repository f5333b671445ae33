"""The native-resolution families' export stages (Qwen3-VL, Qwen2.5-VL, Qwen3.5).

What differs from LLaVA: the ONNX graph takes one image of any size (the grid-dependent inputs are
rebuilt on the host from facts the manifest records), the merger runs inside it (no projector
file), and the language model is the VLM's text model plus lm_head, loaded at run time into the
stock VLM class (`runtime.qwen_bundle_llm`), so the stock M-RoPE / DeepStack forward runs on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edge_hired.export.onnx_encoder import ParityFigure
from edge_hired.export.qwen_encoder_export import export_qwen_encoder
from edge_hired.export.qwen_encoder_graph import ATTENTION_QUERY_CHUNKS
from edge_hired.export.recipes import Recipe
from edge_hired.runtime.loading import NativeFacts
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec


def export_native_vision(
    model: Any, facts: NativeFacts, recipe: Recipe, path: Path, dtype: torch.dtype, opset: int
) -> tuple[list[ParityFigure], int]:
    """Write the tower's graph to `path` and check it on two patch grids: (figures, bytes)."""
    tolerances = recipe.tolerance_for(str(dtype).removeprefix("torch."))
    figures = export_qwen_encoder(model, path, dtype, opset, tolerances, facts.layers.l_final)
    # The graph holds the tower's (floating-point) weights in `dtype`: counted, not copied.
    weights = sum(p.numel() for p in model.model.visual.parameters())
    return figures, weights * dtype.itemsize


def native_spec_fields(facts: NativeFacts, model: Any) -> dict[str, int]:
    """The manifest's native-resolution fields: geometry limits and the graph's grid and
    attention-chunk facts."""
    spec = QwenEncoderSpec.from_config(model.model.visual.config, facts.layers.l_final)
    return {
        "spatial_merge": facts.merge,
        "min_pixels": facts.min_pixels,
        "max_pixels": facts.max_pixels,
        "position_grid_side": spec.grid_side,
        "window_size": spec.window_size,
        "deepstack_outputs": spec.num_deepstack,
        "attention_query_chunks": ATTENTION_QUERY_CHUNKS,
    }
