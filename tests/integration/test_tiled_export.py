"""InternVL / SmolVLM bundles: the ONNX encoder (features + signal rows), the manifest's tiling
facts, and fp32 bundles that answer as the stock model does at 100%, on every grid kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_hired.bundle.manifest import read_manifest
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.export.recipes import load_recipe
from edge_hired.export.tiled_encoder_graph import TiledEncoderGraph
from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.integration.test_tiled_runtime import (
    CASES,
    FAMILIES,
    GREEDY,
    NEW_TOKENS,
    PROMPT,
    SHAPES,
    stock_inputs,
)
from tests.integration.test_tiled_selection import rewritten, sharpen
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

LARGEST = {"tiny-internvl": (300, 400), "tiny-smolvlm": (1024, 1024)}  # 3x4 and 4x4 tiles

# preset -> (family, signal, tile, patch, merge, min / max tiles, longest edge)
MANIFESTS = {
    "tiny-internvl": ("internvl", "cls", 448, 14, 2, 1, 12, 0),
    "tiny-smolvlm": ("smolvlm", "received", 512, 16, 4, 1, 12, 2048),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(checkpoint with sharp attention, fp32 bundle of it) per preset."""
    from edge_hired.models.tiny import build_checkpoint

    root = tmp_path_factory.mktemp("tiled-export")
    out = {}
    for name, (_, model_cls) in FAMILIES.items():
        source = build_checkpoint(name, root / f"{name}-source")
        model = rewritten(model_cls, source, root / name, sharpen)
        bundle = root / f"{name}-bundle"
        export_bundle(str(model), bundle, ExportOptions(quantization="none", dtype="fp32"))
        out[name] = (model, bundle)
    return out


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_manifest_records_family_signal_tiling_and_parity(built: dict, name: str) -> None:
    manifest = read_manifest(built[name][1])
    family, signal, tile, patch, merge, low, high, edge = MANIFESTS[name]
    vision = manifest.vision
    assert (vision.family, vision.signal, vision.crop_size, vision.patch_size) == (
        family,
        signal,
        tile,
        patch,
    )
    assert (vision.tile_merge, vision.min_tiles, vision.max_tiles, vision.longest_edge) == (
        merge,
        low,
        high,
        edge,
    )
    assert vision.tokens_per_partition == (tile // patch) ** 2
    tolerances = load_recipe(family).tolerance_for("float32")
    assert set(manifest.parity) == set(tolerances)
    for output, figure in manifest.parity.items():
        assert figure["max_abs_diff"] <= tolerances[output] == figure["tolerance"]


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_export_graph_is_the_in_process_encoder(built: dict, name: str) -> None:
    """The graph the ONNX file was traced from = the stock tower with hooks (stock order)."""
    pipeline = Pipeline.from_pretrained(str(built[name][0]), device="cpu", dtype="float32")
    pixels, geometry = pipeline.preprocess(noise(*LARGEST[name]))
    ours = pipeline.encode(pixels)
    model = FAMILIES[name][1].from_pretrained(built[name][0]).eval()
    tower = model.model.vision_tower if name == "tiny-internvl" else model.model.vision_model
    graph = TiledEncoderGraph(tower, pipeline.facts).eval()
    with torch.no_grad():
        outputs = graph(pixels)
    order = torch.roll(torch.arange(geometry.num_partitions), 1)
    expected = (ours.features, ours.cls_init, ours.cls_final, ours.keys_final)
    for got, want in zip(outputs, expected, strict=True):
        torch.testing.assert_close(got[order], want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_fp32_bundle_at_full_budget_is_the_stock_model(
    built: dict, name: str, size: tuple[int, int]
) -> None:
    model_dir, bundle = built[name]
    pipeline = load_bundle_pipeline(bundle, BundleLoadOptions(device="cpu", dtype="fp32"))
    image = noise(*size, seed=sum(size))
    assert pipeline.facts.geometry_for(size).grid == SHAPES[name][size]
    inputs = stock_inputs(pipeline, name, image)
    model = FAMILIES[name][1].from_pretrained(model_dir).eval()
    with torch.no_grad():
        stock = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    result = pipeline.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    assert result.token_ids == stock[0, inputs["input_ids"].shape[1] :].tolist()
    fifth = pipeline.run(image, PROMPT, SelectionOptions(ratio=0.2), GREEDY)
    assert (
        fifth.visual_tokens_kept == sum(fifth.partition_budgets) == result.visual_tokens_total // 5
    )


@pytest.mark.parametrize(("name", "partitions"), [("tiny-internvl", 13), ("tiny-smolvlm", 17)])
def test_tensorrt_profile_bound_is_the_largest_tiled_image(
    built: dict, name: str, partitions: int
) -> None:
    from edge_hired.runtime.bundle_runtime import _max_partitions

    assert _max_partitions(read_manifest(built[name][1])) == partitions
