"""The bundle's Qwen-VL language model: saved from a stock model, loaded back without a tower.

For each family (tiny presets, CPU), the bundle's model runs the stock VLM forward:
- unquantized (fp32): a prefill with the kept features as `mm_encoder_outputs` at the pruned
  M-RoPE positions (`prune_prompt`, which calls the loaded model's own `get_rope_index`), then
  eager decode steps at `RopePositions`: logits `torch.equal` to the full stock VLM's, and
  greedy `generate` with precomputed features gives the stock tokens. Equality holds by
  construction once both models' tensors sit in fresh allocations (`fresh_memory`): the same
  modules then run the same kernels on the same tensors. Left at the addresses
  `from_pretrained` maps them to (file offsets of two different safetensors files), x86's
  one-row matmul takes an alignment-dependent path and the decode steps differ by ~1e-7;
- its parameter bytes are the stock state dict's minus `model.visual.*` (tied tensors once),
  counted here from the stock model; the tower stand-in holds no parameter or buffer;
- 4bit (fp32 compute) and 8bit (fp16): bitsandbytes layers exactly at the text decoder's Linear
  layers, lm_head a plain Linear in the compute dtype, and logits and tokens `torch.equal` to the
  stock checkpoint quantized as it loads (`run --model --quant`, `load_native_parts`): both
  quantize the same tensors with the same bitsandbytes functions and run the same kernels;
- the stand-in refuses pixels with its one-line error; inconsistent directories are refused.

`run --model --quant 4bit` of a Qwen checkpoint (`load_native_parts`): stock `generate` tokens,
only the text decoder quantized, and the vision output equal to the fp32 model's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from edge_hired.errors import ModelLoadError
from edge_hired.export.language_model import save_native_language_model
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.language_model import parameter_bytes
from edge_hired.runtime.loading import (
    LINEAR_ATTENTION_GATES,
    NATIVE_FAMILIES,
    load_native_parts,
    read_config,
)
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.positions import RopePositions
from edge_hired.runtime.prefix import SelectionOptions
from edge_hired.runtime.qwen_bundle_llm import LM_HEAD_FILE, TOWER_ABSENT, load_native_llm
from edge_hired.runtime.qwen_positions import prune_prompt
from edge_hired.runtime.qwen_prefix import kept_encoder_outputs, native_preprocess, new_cache
from edge_hired.runtime.qwen_vision import NativeVisionOutput
from edge_hired.runtime.sampling import SamplingOptions
from tests.integration.test_qwen_runtime import stock_generate, stock_inputs
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

FAMILIES = ("tiny-qwen3-vl", "tiny-qwen2.5-vl", "tiny-qwen3.5")
SETTINGS = {"none": torch.float32, "4bit": torch.float32, "8bit": torch.float16}
QUANTIZED_LAYER = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}
GRID = (1, 4, 6)  # patches: 2 x 3 merge units
KEPT = np.array([0, 2, 3, 5])  # raster units kept of the 6
STEPS = 4
NEW_TOKENS = 6
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Case:
    """One prompt: text, an image's N placeholders, text; the image's features; kept units."""

    ids: torch.Tensor  # [1, L] unpruned
    vision: NativeVisionOutput


# --- fixtures --------------------------------------------------------------------------------


def fresh_memory(model: Any) -> Any:
    """`model` with every parameter and buffer copied into a fresh (64-byte aligned) allocation.

    CPU kernels for one-row matmuls choose their path by the weight's address alignment, and
    tensors mapped from safetensors sit at their file offsets; both sides of every comparison
    get this copy, so equal tensors run the same path. Tied tensors stay tied.
    """
    copies: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for tensor in [*module._parameters.values(), *module._buffers.values()]:
            if tensor is not None:
                key = tensor.data_ptr()
                copies.setdefault(key, tensor.data.clone())
                tensor.data = copies[key]
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-bundle-llm")
    return {name: build_checkpoint(name, root / name) for name in FAMILIES}


def stock_model(directory: Path, config: Any = None) -> Any:
    model_class = getattr(transformers, NATIVE_FAMILIES[read_config(str(directory)).model_type])
    if config is not None:
        torch.manual_seed(0)
        return model_class(config).eval()
    return fresh_memory(model_class.from_pretrained(directory, dtype=torch.float32).eval())


@pytest.fixture(scope="module")
def stock(checkpoints: dict[str, Path]) -> dict[str, Any]:
    return {name: stock_model(directory) for name, directory in checkpoints.items()}


@pytest.fixture(scope="module")
def saved(stock: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """(family, quantization) -> (directory, spec)."""
    root = tmp_path_factory.mktemp("bundle-llms")
    found = {}
    for name, model in stock.items():
        for quantization, dtype in SETTINGS.items():
            directory = root / name / quantization
            found[name, quantization] = (
                directory,
                save_native_language_model(model, directory, quantization, dtype),
            )
    return found


@pytest.fixture(scope="module")
def loaded(saved: dict, checkpoints: dict[str, Path]) -> dict:
    return {
        key: fresh_memory(load_native_llm(directory, checkpoints[key[0]], CPU))
        for key, (directory, _spec) in saved.items()
    }


@pytest.fixture(scope="module")
def cases(stock: dict[str, Any]) -> dict[str, Case]:
    return {name: make_case(model) for name, model in stock.items()}


def make_case(model: Any) -> Case:
    """Random pixels through the stock tower; a prompt with text on both sides of the image."""
    grid = torch.tensor([GRID])
    width = model.model.visual.patch_embed.proj.weight[0].numel()  # C x T x patch x patch
    pixels = torch.randn(GRID[1] * GRID[2], width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.model.get_image_features(pixels, grid, return_dict=True)
    features = out.pooler_output[0][None]
    deepstack = tuple(layer[0] for layer in getattr(out, "deepstack_features", None) or ())
    signal = torch.zeros(1, 1, features.shape[1])
    vision = NativeVisionOutput(features, signal, signal, features, "received", deepstack, grid)
    config = model.config
    image = [config.image_token_id] * features.shape[1]
    text = [300, 307, 311, config.vision_start_token_id]
    ids = torch.tensor([[*text, *image, config.vision_end_token_id, 313, 317]])
    return Case(ids, vision)


# --- what the tests run ----------------------------------------------------------------------


def prefill_and_decode(model: Any, case: Case) -> torch.Tensor:
    """Logits [L' + STEPS, V] of the pruned prefill and STEPS eager greedy decode steps."""
    prompt = prune_prompt(model, case.ids, case.vision.grid_thw, KEPT)
    length = prompt.input_ids.shape[1]
    positions = RopePositions(prompt.position_ids, prompt.rope_delta)
    with torch.no_grad():
        out = model(
            input_ids=prompt.input_ids,
            attention_mask=torch.ones_like(prompt.input_ids),
            position_ids=prompt.position_ids,
            mm_encoder_outputs={"image": kept_encoder_outputs(case.vision, KEPT)},
            past_key_values=new_cache(model),
            use_cache=True,
        )
        logits = [out.logits[0]]
        for _ in range(STEPS):
            token = logits[-1][-1].argmax().view(1, 1)
            length += 1
            out = model(
                inputs_embeds=model.get_input_embeddings()(token),
                attention_mask=torch.ones((1, length), dtype=torch.long),
                position_ids=positions.span(length - 1, length, CPU),
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            logits.append(out.logits[0])
    return torch.cat(logits)


def greedy(model: Any, case: Case) -> list[int]:
    """`generate` with the kept features precomputed, at the pruned prompt's positions."""
    prompt = prune_prompt(model, case.ids, case.vision.grid_thw, KEPT)
    with torch.no_grad():
        out = model.generate(
            input_ids=prompt.input_ids,
            attention_mask=torch.ones_like(prompt.input_ids),
            position_ids=prompt.position_ids,
            mm_encoder_outputs={"image": kept_encoder_outputs(case.vision, KEPT)},
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
        )
    return out[0, prompt.input_ids.shape[1] :].tolist()


def bytes_without_tower(model: Any) -> int:
    """Bytes of the stock state dict's tensors outside `model.visual.`, shared storage once."""
    seen, total = set(), 0
    for name, tensor in model.state_dict().items():
        if name.startswith("model.visual.") or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def decoder_linears(model: Any) -> set[str]:
    """Names of the stock model's Linear layers inside the text decoder, but Qwen3.5's gates."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith("model.language_model.")
        and not name.endswith(LINEAR_ATTENTION_GATES)
    }


# --- unquantized: the stock forward, the stock bytes -----------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_and_decode_logits_are_the_stock_ones(stock, loaded, cases, family) -> None:
    ours = prefill_and_decode(loaded[family, "none"], cases[family])
    theirs = prefill_and_decode(stock[family], cases[family])
    assert ours.shape[0] == len(KEPT) + cases[family].ids.shape[1] - 6 + STEPS
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_precomputed_features_is_stock(stock, loaded, cases, family) -> None:
    tokens = greedy(loaded[family, "none"], cases[family])
    assert len(tokens) == NEW_TOKENS
    assert tokens == greedy(stock[family], cases[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loaded_model_holds_no_vision_bytes(stock, loaded, family) -> None:
    model = loaded[family, "none"]
    tower = model.model.visual
    assert list(tower.parameters()) == [] and list(tower.buffers()) == []
    assert parameter_bytes(model) == bytes_without_tower(stock[family])
    assert bytes_without_tower(stock[family]) < parameter_bytes(stock[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_directory_holds_what_the_spec_says(stock, saved, family) -> None:
    directory, spec = saved[family, "none"]
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "generation_config.json",
        LM_HEAD_FILE,
        "model.safetensors",
    ]
    assert spec.weight_bytes == sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    text = stock[family].config.text_config
    kinds = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    assert spec.architecture == type(stock[family]).__name__
    assert spec.num_layers == kinds.count("full_attention")  # Qwen3.5: 1 of its 2 layers
    assert (spec.hidden_size, spec.vocab_size) == (text.hidden_size, text.vocab_size)
    with safe_open(str(directory / "model.safetensors"), "pt") as handle:
        assert not any(name.startswith(("visual", "lm_head")) for name in handle.keys())  # noqa: SIM118


@pytest.mark.parametrize("family", FAMILIES)
def test_the_runtime_runs_the_bundle_llm_as_it_runs_the_stock_model(
    checkpoints, loaded, family: str
) -> None:
    """`Pipeline.run` (HiRED at 50%, eager decode) with the bundle's LLM swapped in, the encoder
    kept (the ONNX encoder hands over the same `NativeVisionOutput`): the stock answer."""
    directory = checkpoints[family]
    parts = load_native_parts(read_config(str(directory)), str(directory), CPU, torch.float32, None)
    stock_parts = replace(parts, llm=fresh_memory(parts.llm))
    bundle_parts = replace(stock_parts, llm=loaded[family, "none"])
    options = SelectionOptions(strategy="hired", ratio=0.5)
    sampling = SamplingOptions(max_new_tokens=NEW_TOKENS)
    picture = noise(224, 320)
    ours = Pipeline(bundle_parts).run(picture, "What is this?", options, sampling)
    theirs = Pipeline(stock_parts).run(picture, "What is this?", options, sampling)
    assert ours.kept == theirs.kept and 0 < ours.visual_tokens_kept < ours.visual_tokens_total
    assert ours.token_ids and ours.token_ids == theirs.token_ids


def test_tied_embeddings_are_saved_once_and_stay_tied(checkpoints, tmp_path: Path) -> None:
    directory = checkpoints["tiny-qwen3-vl"]
    config = read_config(str(directory))
    config.tie_word_embeddings = True
    model = stock_model(directory, config)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    save_native_language_model(model, tmp_path / "llm", "none", torch.float32)
    assert not (tmp_path / "llm" / LM_HEAD_FILE).exists()
    config.save_pretrained(tmp_path / "vlm")
    ours = fresh_memory(load_native_llm(tmp_path / "llm", tmp_path / "vlm", CPU))
    assert ours.lm_head.weight is ours.model.language_model.embed_tokens.weight
    assert parameter_bytes(ours) == bytes_without_tower(model)
    case = make_case(model)
    assert torch.equal(prefill_and_decode(ours, case), prefill_and_decode(model, case))


# --- quantized: the text decoder only, as `run --model --quant` quantizes it -----------------


@pytest.fixture(scope="module")
def quantized_at_load(checkpoints: dict[str, Path]) -> dict:
    """(family, quantization) -> the stock model quantized as it loads (`load_native_parts`)."""
    found = {}
    for name, directory in checkpoints.items():
        config = read_config(str(directory))
        for quantization in QUANTIZED_LAYER:
            dtype = SETTINGS[quantization]
            parts = load_native_parts(config, str(directory), CPU, dtype, None, quantization)
            found[name, quantization] = fresh_memory(parts.llm)
    return found


@pytest.mark.parametrize("quantization", QUANTIZED_LAYER)
@pytest.mark.parametrize("family", FAMILIES)
def test_quantized_layers_are_the_text_decoder_linears(
    stock, loaded, family: str, quantization: str
) -> None:
    model = loaded[family, quantization]
    layer = QUANTIZED_LAYER[quantization]
    found = {name for name, module in model.named_modules() if isinstance(module, layer)}
    assert found == decoder_linears(stock[family])
    plain = [
        m for n, m in model.named_modules() if n.endswith(("lm_head", *LINEAR_ATTENTION_GATES))
    ]
    assert len(plain) == 1 + (2 if family == "tiny-qwen3.5" else 0)  # Qwen3.5: 1 linear layer
    assert all(type(m) is torch.nn.Linear for m in plain)
    assert all(m.weight.dtype == SETTINGS[quantization] for m in plain)
    assert list(model.model.visual.parameters()) == []


@pytest.mark.parametrize("quantization", QUANTIZED_LAYER)
@pytest.mark.parametrize("family", FAMILIES)
def test_quantized_round_trip_equals_quantizing_at_load(
    loaded, quantized_at_load, cases, family: str, quantization: str
) -> None:
    ours, reference = loaded[family, quantization], quantized_at_load[family, quantization]
    case = cases[family]
    assert torch.equal(prefill_and_decode(ours, case), prefill_and_decode(reference, case))
    assert greedy(ours, case) == greedy(reference, case)


@pytest.mark.parametrize("quantization", QUANTIZED_LAYER)
@pytest.mark.parametrize("family", FAMILIES)
def test_quantized_bytes_are_the_text_model_and_lm_head(
    saved, loaded, family: str, quantization: str
) -> None:
    directory, spec = saved[family, quantization]
    model = loaded[family, quantization]
    text = transformers.AutoModel.from_pretrained(directory, device_map="cpu")
    head = model.lm_head.weight
    assert parameter_bytes(model) == parameter_bytes(text) + head.numel() * head.element_size()
    assert spec.weight_bytes == sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    assert spec.weight_bytes < saved[family, "none"][1].weight_bytes


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_absent_tower_refuses_pixels_in_one_line(loaded, cases, family: str) -> None:
    model = loaded[family, "none"]
    width = 3 * 2 * model.config.vision_config.patch_size**2
    pixels, grid = torch.zeros(GRID[1] * GRID[2], width), torch.tensor([GRID])
    with pytest.raises(ModelLoadError) as caught:
        model.model.get_image_features(pixels, grid)
    assert str(caught.value) == TOWER_ABSENT and "\n" not in TOWER_ABSENT
    ids = cases[family].ids
    types = (ids == model.config.image_token_id).to(torch.int32)
    with pytest.raises(ModelLoadError, match="ONNX encoder"):
        model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, mm_token_type_ids=types)


def test_a_quantization_other_than_the_saved_one_is_refused(saved, checkpoints) -> None:
    directory, _spec = saved["tiny-qwen3-vl", "4bit"]
    with pytest.raises(ModelLoadError, match="expected 8bit, got '4bit'"):
        load_native_llm(directory, checkpoints["tiny-qwen3-vl"], CPU, quantization="8bit")


def test_a_missing_lm_head_is_refused(saved, checkpoints, tmp_path: Path) -> None:
    copy = tmp_path / "llm"
    shutil.copytree(saved["tiny-qwen2.5-vl", "none"][0], copy)
    (copy / LM_HEAD_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"lm_head\.safetensors: expected the file"):
        load_native_llm(copy, checkpoints["tiny-qwen2.5-vl"], CPU)


def test_a_text_model_of_another_vlm_is_refused(saved, checkpoints) -> None:
    directory, _spec = saved["tiny-qwen3.5", "none"]
    with pytest.raises(ModelLoadError, match="text model model_type"):
        load_native_llm(directory, checkpoints["tiny-qwen3-vl"], CPU)


def test_a_vlm_config_of_another_family_is_refused(saved, tmp_path: Path) -> None:
    transformers.LlavaConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="model type: expected qwen3_vl or"):
        load_native_llm(saved["tiny-qwen3-vl", "none"][0], tmp_path, CPU)


def test_exporting_a_model_of_another_family_is_refused(tmp_path: Path) -> None:
    config = transformers.LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    with pytest.raises(ModelLoadError, match="expected a qwen3_vl or"):
        save_native_language_model(
            transformers.LlamaForCausalLM(config), tmp_path / "llm", "none", torch.float32
        )
    assert not (tmp_path / "llm").exists()


# --- `run --model --quant 4bit` of a Qwen checkpoint -----------------------------------------


@pytest.fixture(scope="module")
def pipelines(checkpoints: dict[str, Path]) -> dict[str, Pipeline]:
    directory = str(checkpoints["tiny-qwen3-vl"])
    return {
        "fp32": Pipeline.from_pretrained(directory, "cpu", "float32"),
        "4bit": Pipeline.from_pretrained(directory, "cpu", "float32", quantization="4bit"),
    }


def test_run_quant_4bit_generates_the_stock_tokens(pipelines) -> None:
    pipeline, picture = pipelines["4bit"], noise(256, 320)
    options = SelectionOptions(strategy="hired", ratio=1.0)
    result = pipeline.run(picture, "What is this?", options, SamplingOptions(max_new_tokens=5))
    assert result.token_ids  # tokens came out, and they are stock generate's on the same model
    assert result.token_ids == stock_generate(pipeline, stock_inputs(pipeline, picture))
    assert pipeline.parts.loaded.quantization == "4bit"


def test_run_quant_4bit_quantizes_only_the_text_decoder(pipelines) -> None:
    model, plain = pipelines["4bit"].model, pipelines["fp32"].model
    found = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert found == decoder_linears(plain)
    assert type(model.lm_head) is torch.nn.Linear
    towers = [m for m in model.model.visual.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert towers == []


def test_run_quant_4bit_vision_output_is_the_fp32_one(pipelines) -> None:
    picture = noise(224, 288)
    outputs = []
    for pipeline in (pipelines["4bit"], pipelines["fp32"]):
        geometry = pipeline.facts.geometry_for((picture.height, picture.width))
        pixels, _ = native_preprocess(pipeline.processor, geometry, picture)
        outputs.append(pipeline.parts.encoder(pixels))
    four, full = outputs
    assert torch.equal(four.features, full.features)
    assert torch.equal(four.cls_final, full.cls_final)
    assert len(four.deepstack) == 2
    assert all(torch.equal(a, b) for a, b in zip(four.deepstack, full.deepstack, strict=True))
