"""`edge-hired export` and `run --bundle`: the bundle alone reproduces the stock model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

from edge_hired.bundle.manifest import MANIFEST_NAME, read_manifest
from edge_hired.cli.main import main
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.export.onnx_encoder import ExportParityError
from edge_hired.export.recipes import RECIPES_ENV, recipes_dir
from edge_hired.runtime.bundle_runtime import load_bundle_pipeline
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import PROMPT, stock_generate, stock_inputs, textured_image

pytestmark = pytest.mark.integration

GREEDY = SamplingOptions(max_new_tokens=6)


@pytest.fixture(scope="module")
def next_bundle(tiny_next_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-next-none"
    export_bundle(str(tiny_next_dir), out, ExportOptions(quantization="none", dtype="fp32"))
    return out


@pytest.fixture(scope="module")
def llava_bundle(tiny_llava_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-llava-none"
    options = ExportOptions(quantization="none", dtype="fp32", measure_memory=False)
    export_bundle(str(tiny_llava_dir), out, options)
    return out


def test_manifest_records_parity_geometry_and_hashes(next_bundle: Path) -> None:
    manifest = read_manifest(next_bundle)
    assert set(manifest.parity) == {"features", "cls_attn_init", "cls_attn_final", "keys_final"}
    for figure in manifest.parity.values():
        assert 0 <= figure["max_abs_diff"] <= figure["tolerance"]
    vision = manifest.vision
    assert (vision.tokens_per_partition, vision.layers_in_graph, vision.l_init, vision.l_final) == (
        576,
        3,
        0,
        2,
    )
    assert vision.activation_bytes_per_partition > 0
    assert manifest.llm.quantization == "none" and manifest.llm.num_layers == 2
    for key in ("edge-hired", "torch", "transformers", "onnx", "bitsandbytes"):
        assert manifest.versions[key]
    on_disk = {p.relative_to(next_bundle).as_posix() for p in next_bundle.rglob("*") if p.is_file()}
    assert on_disk - {MANIFEST_NAME} == set(manifest.files)
    assert not [name for name in on_disk if name.endswith((".bin", ".pt", ".pkl", ".pth"))]
    assert manifest.llm.weight_bytes == sum(
        r.bytes
        for n, r in manifest.files.items()
        if n.startswith("llm/") and n.endswith(".safetensors")
    )


def test_onnx_graph_stops_at_the_feature_layer_with_dynamic_partitions(next_bundle: Path) -> None:
    model = onnx.load(str(next_bundle / "vision_encoder.onnx"))
    scopes = {p.value for n in model.graph.node for p in n.metadata_props if p.key == "namespace"}
    layers = {int(m) for s in scopes for m in re.findall(r"encoder\.layers\.(\d+)[:/]", s)}
    assert layers == {0, 1, 2}  # 4-layer tower, feature layer -2: layer 3 is not in the graph
    assert [o.name for o in model.graph.output] == [
        "features",
        "cls_attn_init",
        "cls_attn_final",
        "keys_final",
    ]
    first_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first_dim.dim_param and not first_dim.dim_value


@pytest.mark.parametrize("size", [(600, 640), (300, 600), (1000, 300)])
def test_bundle_at_full_budget_matches_stock_generate(size, next_bundle, tiny_next_dir) -> None:
    pipeline = load_bundle_pipeline(next_bundle)
    image = textured_image(*size, seed=size[0])
    result = pipeline.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    stock = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir).eval()
    assert result.token_ids == stock_generate(stock, stock_inputs(tiny_next_dir, image))


def test_llava15_bundle_at_full_budget_matches_stock(llava_bundle, tiny_llava_dir) -> None:
    image = textured_image(500, 500, seed=9)
    result = load_bundle_pipeline(llava_bundle).run(image, PROMPT, SelectionOptions("full"), GREEDY)
    stock = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    assert result.token_ids == stock_generate(stock, stock_inputs(tiny_llava_dir, image))


@pytest.mark.parametrize("strategy", ["hired", "prumerge+"])
def test_bundle_at_20_percent_equals_the_in_process_pipeline(
    strategy, next_bundle, tiny_next_dir
) -> None:
    image = textured_image(560, 800, seed=4)
    options = SelectionOptions(strategy=strategy, ratio=0.2)
    from_bundle = load_bundle_pipeline(next_bundle).run(image, PROMPT, options, GREEDY)
    in_process = Pipeline.from_pretrained(str(tiny_next_dir), device="cpu").run(
        image, PROMPT, options, GREEDY
    )
    assert from_bundle.kept == in_process.kept
    assert from_bundle.llm_input_tokens == in_process.llm_input_tokens
    assert from_bundle.token_ids == in_process.token_ids


def test_cli_export_then_run_bundle_json(capsys, tiny_next_dir, tmp_path) -> None:
    out = tmp_path / "cli-bundle"
    assert (
        main(
            [
                "export",
                str(tiny_next_dir),
                "--out",
                str(out),
                "--quant",
                "none",
                "--dtype",
                "fp32",
                "--no-measure",
                "--json",
            ]
        )
        == 0
    )
    exported = json.loads(capsys.readouterr().out)
    assert exported["bundle"] == str(out) and exported["llm"]["quantization"] == "none"
    image = tmp_path / "img.png"
    textured_image(400, 800).save(image)
    assert (
        main(
            [
                "run",
                "--bundle",
                str(out),
                "--image",
                str(image),
                "--budget",
                "0.2",
                "--json",
                "--max-new-tokens",
                "2",
                "--providers",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["visual_tokens_kept"] == int(0.2 * 3 * 576) and result["grid"] == [1, 2]


def broken_copy(bundle: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the bundle with one thing wrong."""
    copy = tmp_path / f"broken-{how}"
    shutil.copytree(bundle, copy)
    if how == "tampered":
        path = copy / "projector.safetensors"
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "missing":
        (copy / "vision_encoder.onnx").unlink()
    elif how == "schema":
        manifest = json.loads((copy / MANIFEST_NAME).read_text())
        manifest["schema_version"] = 999
        (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif how == "not-a-bundle":
        (copy / MANIFEST_NAME).unlink()
    return copy


@pytest.mark.parametrize(
    "how, named",
    [
        ("tampered", "projector.safetensors"),
        ("missing", "vision_encoder.onnx"),
        ("schema", "schema_version"),
        ("not-a-bundle", "manifest.json"),
    ],
)
def test_bad_bundles_are_refused_with_exit_2(how, named, next_bundle, tmp_path, capsys) -> None:
    image = tmp_path / "img.png"
    textured_image(64, 64).save(image)
    broken = broken_copy(next_bundle, tmp_path, how)
    code = main(["run", "--bundle", str(broken), "--image", str(image), "--json"])
    err = capsys.readouterr().err
    assert code == 2 and named in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_no_verify_skips_only_the_hash_check(next_bundle, tmp_path, capsys) -> None:
    broken = broken_copy(next_bundle, tmp_path, "tampered")
    image = tmp_path / "img.png"
    textured_image(64, 64).save(image)
    # The flipped byte sits in the safetensors payload: loading still works without the check.
    code = main(
        [
            "run",
            "--bundle",
            str(broken),
            "--image",
            str(image),
            "--json",
            "--max-new-tokens",
            "1",
            "--no-verify",
        ]
    )
    assert code == 0, capsys.readouterr().err


def test_parity_failure_names_the_output_and_leaves_nothing(
    tiny_next_dir, tmp_path, monkeypatch
) -> None:
    strict = tmp_path / "recipes"
    shutil.copytree(recipes_dir(), strict)
    text = (
        (strict / "llava_next.toml")
        .read_text()
        .replace("cls_attn_final = 1e-5", "cls_attn_final = 0.0")
    )
    (strict / "llava_next.toml").write_text(text)
    monkeypatch.setenv(RECIPES_ENV, str(strict))
    out = tmp_path / "bundles" / "strict"
    options = ExportOptions(quantization="none", dtype="fp32", measure_memory=False)
    with pytest.raises(ExportParityError, match="cls_attn_final"):
        export_bundle(str(tiny_next_dir), out, options)
    assert list((tmp_path / "bundles").iterdir()) == []


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_bundle_generates_and_is_smaller(
    quantization, tiny_next_dir, next_bundle, tmp_path
) -> None:
    out = tmp_path / f"tiny-{quantization}"
    options = ExportOptions(quantization=quantization, dtype="fp16", measure_memory=False)
    manifest = export_bundle(str(tiny_next_dir), out, options)
    assert manifest.llm.quantization == quantization
    assert manifest.llm.compute_dtype == "float16"
    assert manifest.llm.weight_bytes < read_manifest(next_bundle).llm.weight_bytes
    result = load_bundle_pipeline(out).run(
        textured_image(300, 600),
        PROMPT,
        SelectionOptions(ratio=0.2),
        SamplingOptions(max_new_tokens=3),
    )
    assert 1 <= len(result.token_ids) <= 3 and torch.isfinite(torch.tensor(result.ttft_s))
    assert result.visual_tokens_kept == int(0.2 * 3 * 576)
