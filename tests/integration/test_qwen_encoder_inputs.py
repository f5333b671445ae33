"""The host-computed inputs of the ONNX Qwen-VL encoder equal what the stock tower computes.

The stock tower runs on four patch grids (square, wide, tall, and an odd merged grid whose
attention windows are cut short) with hooks that record its own internals: the rotary cos / sin
and window boundaries its first block receives, the learned-position rows it gathers and the
hidden state after the position embedding. Ours must equal them exactly (the rotary tables and
position embeddings to the last bit: same float32 arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import transformers

from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.loading import NATIVE_FAMILIES
from edge_hired.runtime.qwen_encoder_inputs import encoder_inputs
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec

pytestmark = pytest.mark.integration

FAMILIES = {"qwen3_vl": "tiny-qwen3-vl", "qwen2_5_vl": "tiny-qwen2.5-vl", "qwen3_5": "tiny-qwen3.5"}
GRIDS = {"square": (1, 16, 16), "wide": (1, 14, 28), "tall": (1, 28, 14), "odd": (1, 6, 10)}


@pytest.fixture(scope="module")
def visuals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("qwen-inputs")
    out = {}
    for family, preset in FAMILIES.items():
        model_class = getattr(transformers, NATIVE_FAMILIES[family])
        path = build_checkpoint(preset, root / preset)
        out[family] = model_class.from_pretrained(path, dtype=torch.float32).eval().model.visual
    return out


def stock_internals(visual: Any, grid: tuple[int, int, int]) -> dict[str, Any]:
    """Run the stock tower on random patches; record block 0's inputs and the position rows."""
    config = visual.config
    width = config.in_channels * config.temporal_patch_size * config.patch_size**2
    pixels = torch.randn(grid[1] * grid[2], width, generator=torch.Generator().manual_seed(0))
    seen: dict[str, Any] = {"pixels": pixels}

    def block_input(_module: Any, args: tuple, kwargs: dict) -> None:
        seen.setdefault("hidden", args[0] if args else kwargs["hidden_states"])
        seen.setdefault("rope", kwargs["position_embeddings"])
        seen.setdefault("cu_seqlens", kwargs["cu_seqlens"])

    def position_rows(_module: Any, args: tuple) -> None:
        seen.setdefault("pos_rows", args[0])

    handles = [visual.blocks[0].register_forward_pre_hook(block_input, with_kwargs=True)]
    if hasattr(visual, "pos_embed"):
        handles.append(visual.pos_embed.register_forward_pre_hook(position_rows))
    try:
        with torch.no_grad():
            visual(pixels, grid_thw=torch.tensor([grid]))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def boundaries(ids: np.ndarray) -> list[int]:
    """cu_window_seqlens as the stock tower writes them, from per-patch window ids."""
    return np.concatenate([[0], np.cumsum(np.bincount(ids))]).tolist()


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_inputs_equal_the_stock_tower_internals(visuals: dict, family: str, grid: str) -> None:
    visual, thw = visuals[family], GRIDS[grid]
    spec = QwenEncoderSpec.from_config(visual.config)
    inputs = encoder_inputs(thw, spec)
    seen = stock_internals(visual, thw)
    with torch.no_grad():
        cos, sin = visual.rotary_pos_emb(seen["pixels"], torch.from_numpy(inputs["rotary_ids"]))
        if spec.windowed:
            order = torch.from_numpy(inputs["window_index"])
            n = cos.shape[0]
            cos, sin = (visual.permute_input_for_window_attn(t, order, n) for t in (cos, sin))
    assert torch.equal(cos, seen["rope"][0]) and torch.equal(sin, seen["rope"][1])
    if spec.windowed:
        assert np.all(np.diff(inputs["window_ids"]) >= 0)  # windows are contiguous runs
        assert boundaries(inputs["window_ids"]) == seen["cu_seqlens"].tolist()
        return
    assert torch.equal(torch.from_numpy(inputs["pos_index"]).T, seen["pos_rows"])
    with torch.no_grad():
        rows = visual.pos_embed(torch.from_numpy(inputs["pos_index"]))
        pos = (rows * torch.from_numpy(inputs["pos_weight"])[:, :, None]).sum(0)
        expected = visual.patch_embed(seen["pixels"]) + pos
    assert torch.equal(expected, seen["hidden"])


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_window_index_matches_the_stock_helper(visuals: dict, grid: str) -> None:
    visual = visuals["qwen2_5_vl"]
    spec = QwenEncoderSpec.from_config(visual.config)
    from transformers.vision_utils import get_vision_window_index

    stock, cu = get_vision_window_index(
        torch.tensor([GRIDS[grid]]), spec.merge, spec.window_size, spec.patch_size
    )
    inputs = encoder_inputs(GRIDS[grid], spec)
    assert inputs["window_index"].tolist() == stock.tolist()
    assert (
        np.concatenate([[0], np.cumsum(np.bincount(inputs["window_ids"]))]).tolist() == cu.tolist()
    )
