"""Export the Qwen-VL vision tower (`QwenEncoderGraph`) to ONNX for any image size, and prove it.

The graph is traced once on a probe patch grid with the patch count N (and the merge units
U = N / merge^2) as dynamic axes, then ONNX Runtime is compared with the fp32 PyTorch graph on
that probe and on a second grid of another shape and size, so a shape baked in at export fails
here, not on the device. A miss raises `ExportParityError` naming the output and the gap.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from edge_hired.export.onnx_encoder import ParityFigure, check_named_parity, export_named
from edge_hired.export.qwen_encoder_graph import QwenEncoderGraph
from edge_hired.runtime.qwen_encoder_inputs import encoder_inputs
from edge_hired.runtime.qwen_encoder_spec import (
    DEEPSTACK_PREFIX,
    FEATURES,
    PIXELS,
    POS_INDEX,
    POS_WEIGHT,
    RECEIVED,
    ROTARY_IDS,
    WINDOW_IDS,
    WINDOW_INDEX,
    QwenEncoderSpec,
)

#: Patch grids (t, rows, cols) of the export probe and of the second parity run: both
#: non-square, transposed aspect, different N; Qwen2.5-VL's windows are cut short on both.
PROBE_GRID = (1, 10, 14)
SECOND_GRID = (1, 16, 8)
MAX_UNITS = 1 << 16  # 4096^2 px at patch 16 is 16384 units; headroom for other configs

#: Max |ONNX Runtime - PyTorch fp32| per output kind, by export dtype (as the LLaVA recipes).
DEFAULT_TOLERANCES = {
    "float32": {FEATURES: 1e-4, DEEPSTACK_PREFIX: 1e-4, RECEIVED: 1e-5},
    "float16": {FEATURES: 5e-2, DEEPSTACK_PREFIX: 5e-2, RECEIVED: 1e-3},
}


def export_qwen_encoder(
    model: nn.Module,
    path: Path,
    dtype: torch.dtype,
    opset: int,
    tolerances: dict[str, float] | None = None,
    block: int | None = None,
) -> list[ParityFigure]:
    """Write `model`'s vision tower to `path` in `dtype`; return the measured parity figures.

    `model` is a ...ForConditionalGeneration in fp32 (the reference); `tolerances` maps output
    names (or the `deepstack_` prefix for every DeepStack layer) to a max |diff|, by default
    `DEFAULT_TOLERANCES` of the dtype; `block` overrides the signal block.
    """
    visual = model.model.visual
    spec = QwenEncoderSpec.from_config(visual.config, block)
    reference = QwenEncoderGraph(visual, spec).eval()
    graph = copy.deepcopy(reference).to(dtype)
    probes = [probe_inputs(visual.config, spec, grid, dtype) for grid in (PROBE_GRID, SECOND_GRID)]
    export_named(graph, path, probes[0], dynamic_axes(spec), opset)
    return check_named_parity(reference, path, probes, output_tolerances(spec, dtype, tolerances))


def probe_inputs(
    config: object, spec: QwenEncoderSpec, grid: tuple[int, int, int], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Random patches of `grid` in `dtype` (seeded) with the grid's host-computed inputs."""
    width = config.in_channels * config.temporal_patch_size * spec.patch_size**2
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(grid[1] * grid[2], width, generator=generator).to(dtype)
    grid_inputs = {k: torch.from_numpy(v) for k, v in encoder_inputs(grid, spec).items()}
    return {PIXELS: pixels, **grid_inputs}


def dynamic_axes(spec: QwenEncoderSpec) -> dict[str, dict[int, object]]:
    """Every input's dynamic axis: patches N = merge^2 x units U."""
    units = torch.export.Dim("units", min=2, max=MAX_UNITS)
    patches = spec.merge**2 * units
    axes: dict[str, dict[int, object]] = {PIXELS: {0: patches}, ROTARY_IDS: {0: patches}}
    if spec.windowed:
        axes.update({WINDOW_INDEX: {0: units}, WINDOW_IDS: {0: patches}})
    else:
        axes.update({POS_INDEX: {1: patches}, POS_WEIGHT: {1: patches}})
    return axes


def output_tolerances(
    spec: QwenEncoderSpec, dtype: torch.dtype, given: dict[str, float] | None = None
) -> dict[str, float]:
    """The tolerance of every output name; DeepStack layers share the `deepstack_` entry."""
    table = given if given is not None else DEFAULT_TOLERANCES[str(dtype).removeprefix("torch.")]
    pick = lambda name: table.get(name, table.get(DEEPSTACK_PREFIX))  # noqa: E731
    return {name: pick(name) for name in spec.output_names}
