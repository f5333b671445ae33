"""The Qwen-VL vision tower as one ONNX graph for every image size, against the stock tower.

For each tiny family (Qwen3-VL, Qwen2.5-VL, Qwen3.5) on a square, a wide and a tall image through
the stock PIL image processor:
- the PyTorch export graph equals stock `get_image_features` (merged and DeepStack features) and
  its per-patch signal equals attention received computed from the signal block's full maps as
  transformers' eager attention records them (window order undone by the stock window index);
- one fp32 export per family (parity checked at export on two grids) runs all three images:
  ONNX Runtime equals the PyTorch graph, and `OnnxQwenEncoder` returns what the in-process
  `QwenVisionEncoder` returns (features, DeepStack, per-unit signal, grid);
- an fp16 export runs once and stays within the fp16 tolerance of the fp32 model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import AttentionInterface
from transformers.models.qwen3_vl.modeling_qwen3_vl import eager_attention_forward

from edge_hired.export.onnx_encoder import ExportParityError, check_named_parity
from edge_hired.export.qwen_encoder_export import (
    DEFAULT_TOLERANCES,
    SECOND_GRID,
    export_qwen_encoder,
    output_tolerances,
    probe_inputs,
)
from edge_hired.export.qwen_encoder_graph import ATTENTION_QUERY_CHUNKS, QwenEncoderGraph
from edge_hired.hired.native_geometry import window_patch_index
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.qwen_encoder_inputs import encoder_inputs
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec
from edge_hired.runtime.qwen_onnx_encoder import OnnxQwenEncoder
from edge_hired.runtime.qwen_prefix import native_preprocess
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

FAMILIES = ("tiny-qwen3-vl", "tiny-qwen2.5-vl", "tiny-qwen3.5")
SHAPES = {"square": (256, 256), "wide": (224, 448), "tall": (448, 224)}
OPSET = 18
CPU = ["CPUExecutionProvider"]
RECORDED: list[tuple[Any, torch.Tensor]] = []


def recording_attention(module: Any, *args: Any, **kwargs: Any) -> tuple:
    """Eager attention that keeps its weights (the reference signal's full maps)."""
    out, weights = eager_attention_forward(module, *args, **kwargs)
    RECORDED.append((module, weights.detach().float()))
    return out, weights


AttentionInterface.register("edge_hired_onnx_recording", recording_attention)


def sharpen(pipeline: Pipeline, scale: float = 20.0) -> Pipeline:
    """Scale the signal block's q and k weights: peaky attention, a signal far from uniform
    (a random tower's is nearly 1/N everywhere, which would let a wrong axis pass)."""
    block = pipeline.model.model.visual.blocks[spec_of(pipeline).signal_block]
    width = block.attn.qkv.weight.shape[1]
    with torch.no_grad():
        block.attn.qkv.weight[: 2 * width] *= scale
        block.attn.qkv.bias[: 2 * width] *= scale
    return pipeline


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pipeline]:
    root = tmp_path_factory.mktemp("qwen-onnx")
    load = lambda name: Pipeline.from_pretrained(  # noqa: E731
        str(build_checkpoint(name, root / name)), "cpu", "float32"
    )
    return {name: sharpen(load(name)) for name in FAMILIES}


@pytest.fixture(scope="module")
def exports(pipelines: dict[str, Pipeline], tmp_path_factory) -> dict[str, tuple[Path, list]]:
    root = tmp_path_factory.mktemp("qwen-onnx-exports")
    out = {}
    for name, pipeline in pipelines.items():
        path = root / f"{name}.onnx"
        out[name] = (path, export_qwen_encoder(pipeline.model, path, torch.float32, OPSET))
    return out


def spec_of(pipeline: Pipeline) -> QwenEncoderSpec:
    return QwenEncoderSpec.from_config(pipeline.model.config.vision_config)


def pixels_of(pipeline: Pipeline, shape: str) -> Any:
    height, width = SHAPES[shape]
    geometry = pipeline.facts.geometry_for((height, width))
    return native_preprocess(pipeline.processor, geometry, noise(height, width))[0]


def graph_feeds(pixels: Any, spec: QwenEncoderSpec) -> dict[str, torch.Tensor]:
    grid = encoder_inputs(pixels.grid_thw[0].tolist(), spec)
    return {
        "pixel_values": pixels.pixel_values,
        **{k: torch.from_numpy(v) for k, v in grid.items()},
    }


def recorded_signal(pipeline: Pipeline, pixels: Any) -> np.ndarray:
    """[heads, N] attention received at the signal block from its eager maps, stock order."""
    visual = pipeline.model.model.visual
    config = visual.config
    saved, config._attn_implementation = config._attn_implementation, "edge_hired_onnx_recording"
    RECORDED.clear()
    try:
        with torch.no_grad():
            visual(pixels.pixel_values, grid_thw=pixels.grid_thw)
    finally:
        config._attn_implementation = saved
    block = visual.blocks[spec_of(pipeline).signal_block].attn
    [maps] = [w for module, w in RECORDED if module is block]  # full attention: one map
    received = maps[0].mean(dim=1).numpy()
    if not getattr(config, "fullatt_block_indexes", None):
        return received
    stock = np.empty_like(received)
    stock[:, window_patch_index(pixels.geometry, config.window_size)] = received
    return stock


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_graph_equals_the_stock_tower(pipelines: dict, family: str, shape: str) -> None:
    pipeline = pipelines[family]
    pixels, spec = pixels_of(pipeline, shape), spec_of(pipeline)
    graph = QwenEncoderGraph(pipeline.model.model.visual, spec).eval()
    with torch.no_grad():
        features, *deepstack, received = graph(**graph_feeds(pixels, spec))
        stock = pipeline.model.model.get_image_features(
            pixels.pixel_values, pixels.grid_thw, return_dict=True
        )
    assert torch.allclose(features, stock.pooler_output[0], rtol=0, atol=1e-5)
    stock_deepstack = getattr(stock, "deepstack_features", None) or []
    assert len(deepstack) == len(stock_deepstack) == spec.num_deepstack
    for ours, theirs in zip(deepstack, stock_deepstack, strict=True):
        assert torch.allclose(ours, theirs[0], rtol=0, atol=1e-5)
    reference = recorded_signal(pipeline, pixels)
    assert reference.max() > 3 / pixels.geometry.num_patches  # sharpened: far from uniform
    assert received.shape == (spec.num_heads, pixels.geometry.num_patches)
    assert np.allclose(received.numpy(), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_names_dynamic_axes_and_parity(pipelines: dict, exports: dict, family: str) -> None:
    spec, (path, figures) = spec_of(pipelines[family]), exports[family]
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(spec.input_names)
    assert [o.name for o in model.graph.output] == list(spec.output_names)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # N is symbolic
    assert [f.output for f in figures] == list(spec.output_names)
    for figure in figures:
        assert figure.tolerance == DEFAULT_TOLERANCES["float32"][figure.output.rstrip("0123456789")]
        assert 0 <= figure.max_abs_diff <= figure.tolerance


class ShiftedFeatures(torch.nn.Module):
    """The export graph with 0.01 added to its merged features: a reference ONNX must miss."""

    def __init__(self, graph: QwenEncoderGraph) -> None:
        super().__init__()
        self.graph, self.output_names = graph, graph.output_names

    def forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, *rest = self.graph(**inputs)
        return (features + 0.01, *rest)


def test_a_parity_miss_names_the_output(pipelines: dict, exports: dict) -> None:
    pipeline = pipelines["tiny-qwen3-vl"]
    spec, visual = spec_of(pipeline), pipeline.model.model.visual
    shifted = ShiftedFeatures(QwenEncoderGraph(visual, spec).eval())
    probe = probe_inputs(visual.config, spec, SECOND_GRID, torch.float32)
    tolerances = output_tolerances(spec, torch.float32)
    with pytest.raises(ExportParityError, match="ONNX output features: max"):
        check_named_parity(shifted, exports["tiny-qwen3-vl"][0], [probe], tolerances)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_runtime_equals_the_graph(pipelines: dict, exports: dict, family: str, shape: str):
    pipeline = pipelines[family]
    pixels, spec = pixels_of(pipeline, shape), spec_of(pipeline)
    feeds = graph_feeds(pixels, spec)
    with torch.no_grad():
        want = QwenEncoderGraph(pipeline.model.model.visual, spec).eval()(**feeds)
    session = ort.InferenceSession(str(exports[family][0]), providers=CPU)
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    for ours, theirs in zip(got, want, strict=True):
        assert ours.shape == tuple(theirs.shape)
        assert np.allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_encoder_returns_what_the_in_process_one_does(
    pipelines: dict, exports: dict, family: str, shape: str
) -> None:
    pipeline = pipelines[family]
    pixels = pixels_of(pipeline, shape)
    encoder = OnnxQwenEncoder(exports[family][0], CPU, "float32", spec_of(pipeline))
    ours, theirs = encoder(pixels), pipeline.parts.encoder(pixels)
    assert encoder.provider == "CPUExecutionProvider"
    assert ours.features.shape == theirs.features.shape == (1, pixels.geometry.num_tokens, 64)
    assert torch.allclose(ours.features, theirs.features, rtol=0, atol=1e-4)
    assert len(ours.deepstack) == len(theirs.deepstack)
    for a, b in zip(ours.deepstack, theirs.deepstack, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-4)
    assert ours.cls_final.shape == theirs.cls_final.shape
    assert torch.allclose(ours.cls_final, theirs.cls_final, rtol=0, atol=1e-4)
    assert torch.equal(ours.cls_init, ours.cls_final) and ours.signal == theirs.signal
    assert ours.grid_thw is pixels.grid_thw and ours.resize_budget == theirs.resize_budget


def intermediate_shapes(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """The runtime shape of every node output of the graph at these inputs (each made a graph
    output for one ONNX Runtime run)."""
    model = onnx.load(str(path))
    known = {v.name for v in (*model.graph.input, *model.graph.output)}
    names = [n for node in model.graph.node for n in node.output if n and n not in known]
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=CPU)
    return dict(zip(names, (a.shape for a in session.run(names, feeds)), strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_no_block_holds_an_n_by_n_map(pipelines: dict, exports: dict, family: str) -> None:
    spec, visual = spec_of(pipelines[family]), pipelines[family].model.model.visual
    grid = (1, 32, 32)  # N = 1024 patches: heads x N^2 / 2 is above every [N, width] tensor
    feeds = {
        k: v.numpy() for k, v in probe_inputs(visual.config, spec, grid, torch.float32).items()
    }
    shapes = intermediate_shapes(exports[family][0], feeds)
    patches = grid[1] * grid[2]
    chunk = spec.num_heads * -(-patches // ATTENTION_QUERY_CHUNKS) * patches
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    assert max(sizes.values()) < spec.num_heads * patches**2 // 2, max(
        sizes.items(), key=lambda i: i[1]
    )
    assert chunk in sizes.values()  # the scores of one query chunk: heads x 64 rows x N keys


@pytest.mark.parametrize("family", FAMILIES)
def test_fewer_patches_than_query_chunks(pipelines: dict, exports: dict, family: str) -> None:
    spec, visual = spec_of(pipelines[family]), pipelines[family].model.model.visual
    feeds = probe_inputs(visual.config, spec, (1, 2, 4), torch.float32)  # N = 8 < 16 chunks
    assert feeds["pixel_values"].shape[0] < ATTENTION_QUERY_CHUNKS
    with torch.no_grad():
        want = QwenEncoderGraph(visual, spec).eval()(**feeds)
    session = ort.InferenceSession(str(exports[family][0]), providers=CPU)
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    for ours, theirs in zip(got, want, strict=True):
        assert ours.shape == tuple(theirs.shape)
        assert np.allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_fp16_export_runs_within_its_tolerance(pipelines: dict, tmp_path: Path, family: str):
    pipeline = pipelines[family]
    path = tmp_path / "encoder-fp16.onnx"
    figures = export_qwen_encoder(pipeline.model, path, torch.float16, OPSET)
    assert all(f.max_abs_diff <= f.tolerance for f in figures)
    pixels = pixels_of(pipeline, "wide")
    ours = OnnxQwenEncoder(path, CPU, "float16", spec_of(pipeline))(pixels)
    theirs = pipeline.parts.encoder(pixels)
    assert ours.features.dtype == torch.float16
    gap = (ours.features.float() - theirs.features).abs().max().item()
    assert gap <= DEFAULT_TOLERANCES["float16"]["features"]
