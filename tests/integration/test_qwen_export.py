"""Qwen3-VL / Qwen2.5-VL / Qwen3.5 bundles: `export`, then `run`, `serve`, `show`, `plan` from them.

- The manifest records what the runtime needs to rebuild the encoder's grid-dependent inputs
  (merge, pixel limits, learned-position grid, windows, DeepStack outputs, the signal block) and
  the measured parity of every ONNX output; no projector file (the merger is in the graph).
- 100%: an fp32 bundle answers as stock `generate` on the checkpoint, token for token, for each
  family on a square, a wide and a tall image (strategies full, hired 1.0, dart 1.0).
- 20%: the bundle keeps exactly the in-process pipeline's merge units (the checkpoint's signal
  block is sharpened, so rankings are well separated), and its LLM receives the same M-RoPE
  positions, the same image-token mask and the same pruned DeepStack features.
- A 4-bit bundle answers as `run --model --quant 4bit` on the same checkpoint.
- The CLI: `run --bundle` = `run --model`, `serve --bundle` alone and batched = `run --bundle`,
  `show --bundle` outlines what `run --bundle` keeps, `eval --bundle` compares every strategy,
  `plan --bundle` plans the native geometry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen3_5ForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from edge_hired.bundle.layout import PROJECTOR_FILE
from edge_hired.bundle.manifest import read_manifest
from edge_hired.cli.main import main
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.export.qwen_encoder_graph import ATTENTION_QUERY_CHUNKS
from edge_hired.export.recipes import load_recipe
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec
from edge_hired.runtime.qwen_vision import signal_block
from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import served
from tests.integration.test_qwen_runtime import (
    PROMPT,
    SHAPES,
    llm_calls,
    run,
    stock_generate,
    stock_inputs,
)
from tests.integration.test_qwen_show import outlined_cells
from tests.integration.test_run_serve_equality import CASES, MODEL, answer, batched, request
from tests.integration.test_tiled_selection import rewritten
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

FAMILIES = {
    "tiny-qwen3-vl": Qwen3VLForConditionalGeneration,
    "tiny-qwen2.5-vl": Qwen2_5_VLForConditionalGeneration,
    "tiny-qwen3.5": Qwen3_5ForConditionalGeneration,
}
FP32 = BundleLoadOptions(device="cpu", dtype="fp32")


def sharpen(model: Any) -> None:
    """Scale the signal block's q and k: peaky attention, well-separated rankings."""
    visual = model.model.visual
    qkv = visual.blocks[signal_block(visual.config)].attn.qkv
    width = qkv.weight.shape[1]
    qkv.weight[: 2 * width] *= 20.0
    qkv.bias[: 2 * width] *= 20.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(sharpened checkpoint, its fp32 bundle) per preset."""
    root = tmp_path_factory.mktemp("qwen-export")
    out = {}
    for name, model_class in FAMILIES.items():
        source = build_checkpoint(name, root / f"{name}-source")
        checkpoint = rewritten(model_class, source, root / name, sharpen)
        bundle = root / f"{name}-bundle"
        export_bundle(str(checkpoint), bundle, ExportOptions(quantization="none", dtype="fp32"))
        out[name] = (checkpoint, bundle)
    return out


@pytest.fixture(scope="module")
def pipelines(built: dict) -> dict[str, tuple[Pipeline, Pipeline]]:
    """(in-process pipeline of the checkpoint, pipeline of its bundle) per preset."""
    return {
        name: (
            Pipeline.from_pretrained(str(checkpoint), "cpu", "float32"),
            load_bundle_pipeline(bundle, FP32),
        )
        for name, (checkpoint, bundle) in built.items()
    }


@pytest.mark.parametrize("name", list(FAMILIES))
def test_manifest_records_what_the_runtime_rebuilds(built: dict, name: str) -> None:
    checkpoint, bundle = built[name]
    manifest = read_manifest(bundle)
    config = FAMILIES[name].config_class.from_pretrained(checkpoint)
    tower = config.vision_config
    size = json.loads((checkpoint / "preprocessor_config.json").read_text())["size"]
    vision = manifest.vision
    assert (vision.family, vision.signal, vision.patch_size) == (
        config.model_type,
        "received",
        tower.patch_size,
    )
    assert (vision.spatial_merge, vision.min_pixels, vision.max_pixels) == (
        tower.spatial_merge_size,
        size["shortest_edge"],
        size["longest_edge"],
    )
    side = int((getattr(tower, "num_position_embeddings", 0) or 0) ** 0.5)
    deepstack = len(getattr(tower, "deepstack_visual_indexes", None) or ())
    assert (vision.position_grid_side, vision.window_size, vision.deepstack_outputs) == (
        side,
        getattr(tower, "window_size", 0) or 0,
        deepstack,
    )
    assert vision.l_final == signal_block(tower) and vision.layers_in_graph == tower.depth
    assert (vision.intermediate_size, vision.num_heads) == (
        tower.intermediate_size,
        tower.num_heads,
    )
    names = QwenEncoderSpec.from_config(tower).output_names
    assert set(manifest.parity) == set(names)
    tolerances = load_recipe(config.model_type).tolerance_for("float32")
    for output, figure in manifest.parity.items():
        allowed = tolerances.get(output, tolerances.get("deepstack_"))
        assert figure["max_abs_diff"] <= allowed == figure["tolerance"]
    assert vision.attention_query_chunks == ATTENTION_QUERY_CHUNKS  # what the planner reads
    assert PROJECTOR_FILE not in manifest.files and manifest.llm.projector_bytes == 0
    assert manifest.llm.quantization == "none"


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_fp32_bundle_at_full_budget_is_stock_generate(
    pipelines: dict, name: str, shape: str
) -> None:
    in_process, bundle = pipelines[name]
    picture = noise(*SHAPES[shape])
    stock = stock_generate(in_process, stock_inputs(in_process, picture))
    for strategy, ratio in (("full", None), ("hired", 1.0), ("dart", 1.0)):
        result = run(bundle, picture, strategy, ratio)
        assert result.token_ids == stock, (strategy, result.token_ids, stock)
        assert result.grid == [1, 1]
        assert result.kept == [list(range(result.visual_tokens_total))]


@pytest.mark.parametrize("strategy", ["hired", "dart"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_fifth_from_the_bundle_is_the_in_process_run(
    pipelines: dict, name: str, strategy: str
) -> None:
    in_process, bundle = pipelines[name]
    picture = noise(*SHAPES["wide"])
    want, want_calls = llm_calls(in_process, lambda: run(in_process, picture, strategy, 0.2))
    got, got_calls = llm_calls(bundle, lambda: run(bundle, picture, strategy, 0.2))
    assert got.kept == want.kept and got.visual_tokens_kept == want.visual_tokens_kept
    assert got.visual_tokens_kept == got.budget_tokens < got.visual_tokens_total
    assert got.token_ids == want.token_ids
    assert len(got_calls) == len(want_calls)
    for mine, theirs in zip(got_calls, want_calls, strict=True):
        assert torch.equal(mine["position_ids"], theirs["position_ids"])
        if theirs["visual_pos_masks"] is not None:
            assert torch.equal(mine["visual_pos_masks"], theirs["visual_pos_masks"])
        layers = theirs["deepstack_visual_embeds"] or []
        assert len(mine["deepstack_visual_embeds"] or []) == len(layers)
        for ours, stock in zip(mine["deepstack_visual_embeds"] or [], layers, strict=True):
            torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)


def test_four_bit_bundle_answers_as_the_checkpoint_quantized_at_load(
    built: dict, tmp_path: Path
) -> None:
    checkpoint = built["tiny-qwen3-vl"][0]
    bundle = tmp_path / "qwen3-vl-4bit"
    export_bundle(str(checkpoint), bundle, ExportOptions(quantization="4bit", dtype="fp32"))
    assert read_manifest(bundle).llm.quantization == "4bit"
    from_bundle = load_bundle_pipeline(bundle, FP32)
    at_load = Pipeline.from_pretrained(str(checkpoint), "cpu", "float32", quantization="4bit")
    assert from_bundle.loaded.quantization == at_load.loaded.quantization == "4bit"
    picture = noise(*SHAPES["tall"])
    for strategy, ratio in (("full", None), ("hired", 0.2)):
        got, want = (
            run(from_bundle, picture, strategy, ratio),
            run(at_load, picture, strategy, ratio),
        )
        assert (got.token_ids, got.kept) == (want.token_ids, want.kept)


def json_of(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qwen-bundle-image") / "wide.png"
    textured_image(300, 500, seed=3).save(path)
    return path


def test_run_from_the_bundle_is_run_from_the_checkpoint(
    built: dict, image_file: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, bundle = built["tiny-qwen2.5-vl"]
    common = ["--image", str(image_file), "--prompt", PROMPT, "--budget", "0.2"]
    common += ["--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "6", "--json"]
    from_model = json_of(capsys, ["run", "--model", str(checkpoint), *common])
    from_bundle = json_of(capsys, ["run", "--bundle", str(bundle), *common])
    for key in ("token_ids", "text", "kept", "grid", "budget_tokens", "visual_tokens_total"):
        assert from_bundle[key] == from_model[key], key


def test_serve_from_the_bundle_alone_and_batched_equal_run(
    built: dict, image_file: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    bundle = built["tiny-qwen3-vl"][1]
    config = ServeConfig(bundle=str(bundle), model_name=MODEL, device="cpu", max_batch=4)
    flags, fields = CASES["seeded"]
    argv = ["run", "--bundle", str(bundle), "--image", str(image_file), "--prompt"]
    argv += ["Describe the picture.", "--budget", "0.2", "--max-new-tokens", "12"]
    ran = json_of(capsys, [*argv, "--device", "cpu", "--json", *flags])
    with served(config) as (base, state):
        payload = request(image_file, fields)
        alone = answer(base, payload)
        scheduler = state.require_ready().scheduler
        batch_ids, batch_text, rows_at_start = batched(base, scheduler, payload, tmp_path)
    assert rows_at_start == [0, 1, 2]
    assert (ran["token_ids"], ran["text"]) == alone == (batch_ids, batch_text)


def test_plan_from_the_bundle_is_the_native_geometry(
    built: dict, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, bundle = built["tiny-qwen3-vl"]
    flags = ["--profile", "orin-nano-8gb", "--json"]
    from_bundle = json_of(capsys, ["plan", "--bundle", str(bundle), *flags])
    from_model = json_of(capsys, ["plan", "--model", str(checkpoint), *flags])
    assert from_bundle["visual_tokens_available"] == from_model["visual_tokens_available"] == 1764
    assert from_bundle["budget_tokens"] == from_model["budget_tokens"]


def test_show_from_the_bundle_outlines_what_run_from_it_keeps(
    built: dict, image_file: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    bundle = built["tiny-qwen3.5"][1]
    source = ["--bundle", str(bundle), "--image", str(image_file), "--budget", "0.2"]
    source += ["--device", "cpu", "--json"]
    out = tmp_path / "show.png"
    report = json_of(capsys, ["show", *source, "--out", str(out)])
    ran = json_of(capsys, ["run", *source, "--max-new-tokens", "1"])
    outlined = outlined_cells(report, out)
    assert outlined == ran["kept"][0] and len(outlined) == ran["budget_tokens"]


def test_eval_from_the_bundle_compares_every_strategy(built: dict, tmp_path: Path) -> None:
    bundle = built["tiny-qwen2.5-vl"][1]
    argv = ["eval", "--bundle", str(bundle), "--budgets", "full,0.2", "--limit", "2"]
    argv += ["--strategies", "hired,dart,resize", "--out", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    settings = json.loads((tmp_path / "summary.json").read_text())["settings"]
    kept = {(row["budget"], row["strategy"]): row["mean_visual_tokens_kept"] for row in settings}
    assert set(kept) == {("full", "full"), ("0.2", "hired"), ("0.2", "dart"), ("0.2", "resize")}
    assert kept["0.2", "hired"] == kept["0.2", "dart"] < kept["full", "full"]
    assert kept["0.2", "resize"] <= kept["0.2", "hired"]


def test_a_hybrid_bundle_plans_its_linear_attention_state_once(
    built: dict, capsys: pytest.CaptureFixture
) -> None:
    """Qwen3.5: the manifest records all decoder layers and one sequence's Gated-DeltaNet state
    (conv state in the compute dtype, recurrent state in float32), and the plan counts it."""
    checkpoint, bundle = built["tiny-qwen3.5"]
    text = Qwen3_5ForConditionalGeneration.config_class.from_pretrained(checkpoint).text_config
    linear = text.layer_types.count("linear_attention")
    keys = text.linear_num_key_heads * text.linear_key_head_dim
    values = text.linear_num_value_heads * text.linear_value_head_dim
    conv = (2 * keys + values) * text.linear_conv_kernel_dim * 4  # fp32 bundle
    recurrent = values * text.linear_key_head_dim * 4
    llm = read_manifest(bundle).llm
    assert 0 < linear < text.num_hidden_layers
    assert (llm.decoder_layers, llm.num_layers) == (
        text.num_hidden_layers,
        text.num_hidden_layers - linear,
    )
    assert llm.linear_state_bytes == linear * (conv + recurrent)
    plan = json_of(
        capsys, ["plan", "--bundle", str(bundle), "--profile", "orin-nano-8gb", "--json"]
    )
    [line] = [line for line in plan["lines"] if line["name"] == "linear-attention state"]
    assert line["bytes"] == llm.linear_state_bytes
