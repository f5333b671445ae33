"""Bundles of SigLIP-tower models: the ONNX encoder emits the attention-received signal, the
manifest records it, and an fp32 bundle alone generates the stock model's tokens at 100%."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from transformers import LlavaForConditionalGeneration, LlavaOnevisionForConditionalGeneration

from edge_hired.bundle.manifest import read_manifest
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.export.recipes import load_recipe
from edge_hired.runtime.bundle_runtime import load_bundle_pipeline
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import (
    PROMPT,
    stock_generate,
    stock_inputs,
    stock_onevision_inputs,
    textured_image,
)

pytestmark = pytest.mark.integration

GREEDY = SamplingOptions(max_new_tokens=6)
SIGNAL_OUTPUTS = ["features", "received_attn_init", "received_attn_final", "keys_final"]
FP32 = ExportOptions(quantization="none", dtype="fp32", measure_memory=False)


@pytest.fixture(scope="module")
def siglip_bundle(tiny_siglip_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-siglip"
    export_bundle(str(tiny_siglip_dir), out, FP32)
    return out


@pytest.fixture(scope="module")
def onevision_bundle(tiny_onevision_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-ov"
    export_bundle(str(tiny_onevision_dir), out, FP32)
    return out


@pytest.mark.parametrize("which", ["siglip_bundle", "onevision_bundle"])
def test_manifest_and_graph_name_the_received_signal(which: str, request) -> None:
    bundle = request.getfixturevalue(which)
    manifest = read_manifest(bundle)
    assert manifest.vision.signal == "received"
    assert manifest.vision.tokens_per_partition == 729
    assert (manifest.vision.layers_in_graph, manifest.vision.l_final) == (4, 3)  # layer -1
    graph = onnx.load(str(bundle / "vision_encoder.onnx"))
    assert [o.name for o in graph.graph.output] == SIGNAL_OUTPUTS
    tolerances = load_recipe(manifest.vision.family).tolerance_for("float32")
    assert set(manifest.parity) == set(SIGNAL_OUTPUTS)
    for name, figure in manifest.parity.items():
        assert figure["tolerance"] == tolerances[name]
        assert 0 <= figure["max_abs_diff"] <= figure["tolerance"]


def test_onevision_manifest_records_anyres_max(onevision_bundle: Path) -> None:
    vision = read_manifest(onevision_bundle).vision
    assert (vision.family, vision.max_tiles, len(vision.pinpoints)) == ("llava_onevision", 9, 36)


def test_siglip_bundle_generates_the_stock_tokens(siglip_bundle, tiny_siglip_dir) -> None:
    pipeline = load_bundle_pipeline(siglip_bundle)
    stock = LlavaForConditionalGeneration.from_pretrained(tiny_siglip_dir).eval()
    image = textured_image(480, 640, seed=3)
    result = pipeline.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    assert result.signal == "received"
    assert result.token_ids == stock_generate(stock, stock_inputs(tiny_siglip_dir, image))
    assert (
        pipeline.run(image, PROMPT, SelectionOptions(ratio=0.2), GREEDY).visual_tokens_kept == 145
    )


@pytest.mark.parametrize("size", [(500, 700), (1080, 1920)])
def test_onevision_bundle_generates_the_stock_tokens(
    size, onevision_bundle, tiny_onevision_dir
) -> None:
    pipeline = load_bundle_pipeline(onevision_bundle)
    stock = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_onevision_dir).eval()
    image = textured_image(*size, seed=5)
    inputs = stock_onevision_inputs(tiny_onevision_dir, image)
    result = pipeline.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    assert result.token_ids == stock_generate(stock, inputs)


def test_bundle_and_in_process_signal_agree(onevision_bundle, tiny_onevision_dir) -> None:
    bundle = load_bundle_pipeline(onevision_bundle)
    in_process = Pipeline.from_pretrained(str(tiny_onevision_dir), device="cpu")
    pixels, _ = in_process.preprocess(textured_image(1080, 1920, seed=8))
    ours, theirs = in_process.parts.encoder(pixels), bundle.parts.encoder(pixels)
    tolerance = load_recipe("llava_onevision").tolerance_for("float32")
    assert (ours.cls_init - theirs.cls_init).abs().max() <= tolerance["received_attn_init"]
    assert (ours.cls_final - theirs.cls_final).abs().max() <= tolerance["received_attn_final"]
    assert (ours.features - theirs.features).abs().max() <= tolerance["features"]


def test_show_draws_the_onevision_grid(onevision_bundle, tmp_path: Path) -> None:
    """Kept cells read back from the PNG's pixels are the anchors HiRED kept in each tile."""
    from edge_hired.visualize import show
    from tests.helpers import highlighted_from_pixels, read_png

    pipeline = load_bundle_pipeline(onevision_bundle)
    image = textured_image(1080, 1920, seed=2)
    options = SelectionOptions(ratio=0.2)
    report = show(pipeline, image, tmp_path / "kept.png", options)
    result = pipeline.run(image, PROMPT, options, GREEDY)
    assert len(report.partition_budgets) == 16  # full image + 3x5 grid
    drawn = highlighted_from_pixels(
        read_png(report.path), list(report.cell_boxes), report.cell_px, report.outline_px
    )
    assert drawn == result.kept
    _, geometry = pipeline.preprocess(image)
    valid = geometry.valid_mask()
    for part, cells in enumerate(report.invalid):
        assert sorted(cells) == np.flatnonzero(~valid[part]).tolist()
