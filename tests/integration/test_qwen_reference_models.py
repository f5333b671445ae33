"""The tiny Qwen3-VL / Qwen2.5-VL / Qwen3.5 presets against the stock transformers models.

For each family and three image shapes (square, wide, tall): the saved processor's grid is our
geometry's; stock `generate` runs from the saved parts; the stock image features fed back
through `mm_encoder_outputs` give the stock output token for token, with the stock positions
and with positions from `prune_prompt` keeping every token. Pruned to 20% by HiRED on the one
partition (synthetic, well-separated scores: plumbing, not ranking) the model runs, the position
ids the LLM receives at the kept tokens are the stock ones at those columns, decoding continues
from the unpruned maximum + 1, and Qwen3-VL's DeepStack features are pruned at the same tokens
(compared with a reference pruning written here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoTokenizer,
    Qwen2VLImageProcessorPil,
    Qwen3VLForConditionalGeneration,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from edge_hired.hired import select_tokens
from edge_hired.hired.native_geometry import NativeGeometry, native_geometry
from edge_hired.models.presets import PRESETS
from edge_hired.models.reference_configs import qwen3_vl_2b_config
from edge_hired.models.tiny import build_checkpoint, make_config
from edge_hired.runtime.qwen_positions import prune_prompt
from tests.integration.test_tiles_reference import noise

NEW_TOKENS = 4
PAD = "<|image_pad|>"
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
]
FAMILIES = {
    "tiny-qwen3-vl": "Qwen3VLForConditionalGeneration",
    "tiny-qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
    "tiny-qwen3.5": "Qwen3_5ForConditionalGeneration",
}
SHAPES = {"square": (256, 256), "wide": (224, 448), "tall": (448, 224)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen")
    return {name: build_checkpoint(name, root / name) for name in FAMILIES}


@dataclass
class Case:
    """One family, one image: the stock model, its inputs and its image features."""

    model: Any
    geometry: NativeGeometry
    inputs: dict[str, torch.Tensor]  # stock generate inputs (ids, mask, pixels, grid, types)
    features: Any  # the stock get_image_features output for the image


def make_case(directory: Path, size: tuple[int, int]) -> Case:
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    processor = Qwen2VLImageProcessorPil.from_pretrained(directory)
    pixels = processor(noise(*size), return_tensors="pt")
    limits = processor.size["shortest_edge"], processor.size["longest_edge"]
    geometry = native_geometry(size, processor.patch_size, processor.merge_size, *limits)
    assert pixels["image_grid_thw"].tolist() == [list(geometry.grid_thw)]
    tokenizer = AutoTokenizer.from_pretrained(directory)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text.count(PAD) == 1
    ids = tokenizer(text.replace(PAD, PAD * geometry.num_tokens), return_tensors="pt")
    types = (ids["input_ids"] == model.config.image_token_id).to(torch.int32)
    inputs = {**ids, **pixels, "mm_token_type_ids": types}
    with torch.no_grad():
        features = model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"])
    assert features.pooler_output[0].shape[0] == geometry.num_tokens
    return Case(model, geometry, dict(inputs), features)


def generate(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )


def llm_calls(model: Any, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, list[dict]]:
    """Run `run` and record what the language model receives at each call."""
    calls: list[dict] = []

    def record(module: Any, args: Any, kwargs: dict) -> None:
        names = ("position_ids", "deepstack_visual_embeds", "visual_pos_masks")
        calls.append({k: kwargs.get(k) for k in names})

    handle = model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        return run(), calls
    finally:
        handle.remove()


def kept_features(case: Case, kept: np.ndarray) -> Any:
    """The stock features (and DeepStack features) at the kept raster tokens, in raster order."""
    index = torch.from_numpy(case.geometry.stock_index()[0, np.sort(kept)])
    pooled = (case.features.pooler_output[0][index],)
    deepstack = getattr(case.features, "deepstack_features", None)
    if deepstack is None:
        return BaseModelOutputWithPooling(pooler_output=pooled)
    layers = [(layer[0][index],) for layer in deepstack]
    return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=layers)


def pruned_inputs(case: Case, kept: np.ndarray) -> tuple[dict[str, Any], Any]:
    """generate() inputs of the pruned prompt: kept placeholders, their positions, features."""
    grid = case.inputs["image_grid_thw"]
    prompt = prune_prompt(case.model, case.inputs["input_ids"], grid, kept)
    inputs = {
        "input_ids": prompt.input_ids,
        "attention_mask": torch.ones_like(prompt.input_ids),
        "position_ids": prompt.position_ids,
        "mm_encoder_outputs": {"image": kept_features(case, kept)},
    }
    return inputs, prompt


def test_tiny_qwen_presets_are_declared_with_their_geometry() -> None:
    patches = [PRESETS[name].patch_size for name in FAMILIES]
    assert patches == [16, 14, 16]
    assert all(PRESETS[name].merge == 2 for name in FAMILIES)
    assert PRESETS["tiny-qwen3-vl"].vision["deepstack_visual_indexes"] == (1, 2)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_stock_features_fed_back_are_the_stock_model(
    checkpoints: dict[str, Path], family: str, shape: str
) -> None:
    case = make_case(checkpoints[family], SHAPES[shape])
    assert type(case.model).__name__ == FAMILIES[family]
    stock = generate(case.model, case.inputs)
    assert stock.shape == (1, case.inputs["input_ids"].shape[1] + NEW_TOKENS)
    fed = {k: v for k, v in case.inputs.items() if k != "pixel_values"}
    full = {"image": kept_features(case, np.arange(case.geometry.num_tokens))}
    assert torch.equal(generate(case.model, {**fed, "mm_encoder_outputs": full}), stock)
    everything, prompt = pruned_inputs(case, np.arange(case.geometry.num_tokens))
    assert torch.equal(prompt.input_ids, case.inputs["input_ids"])
    assert torch.equal(generate(case.model, everything), stock)


def fifth(geometry: NativeGeometry) -> np.ndarray:
    """HiRED at 20% on the one partition, from seeded well-separated patch scores."""
    rng = np.random.default_rng(7)
    patches = rng.permutation(geometry.num_patches).astype(np.float32)[None, None, :]
    rows = geometry.block_scores(patches)
    selection = select_tokens(geometry, "hired", rows, rows, ratio=0.2)  # type: ignore[arg-type]
    assert selection.num_kept == geometry.num_tokens // 5 == len(selection.kept[0])
    return selection.kept[0]


@pytest.mark.parametrize("shape", ["wide", "tall"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pruned_tokens_keep_their_stock_positions(
    checkpoints: dict[str, Path], family: str, shape: str
) -> None:
    case = make_case(checkpoints[family], SHAPES[shape])
    _, stock_calls = llm_calls(case.model, lambda: generate(case.model, case.inputs))
    kept = fifth(case.geometry)
    inputs, prompt = pruned_inputs(case, kept)
    out, calls = llm_calls(case.model, lambda: generate(case.model, inputs))
    assert out.shape == (1, prompt.input_ids.shape[1] + NEW_TOKENS)
    image_id = case.model.config.image_token_id
    assert int((prompt.input_ids == image_id).sum()) == len(kept)

    stock_prefill, mine_prefill = stock_calls[0]["position_ids"], calls[0]["position_ids"]
    columns = torch.from_numpy(prompt.kept_columns)
    assert torch.equal(mine_prefill[1:], stock_prefill[1:, :, columns])
    assert mine_prefill[0, 0].tolist() == list(range(len(columns)))
    # first decoded token: the stock (t, h, w) position, the unpruned maximum + 1
    assert torch.equal(calls[1]["position_ids"][1:], stock_calls[1]["position_ids"][1:])
    unpruned_max = int(stock_prefill[1:].max())  # row 0 is the sequence index, not M-RoPE
    assert int(calls[1]["position_ids"][1:].max()) == unpruned_max + 1
    assert prompt.rope_delta == unpruned_max + 1 - len(columns)


def test_deepstack_features_are_pruned_at_the_kept_tokens(checkpoints: dict[str, Path]) -> None:
    case = make_case(checkpoints["tiny-qwen3-vl"], SHAPES["wide"])
    kept = fifth(case.geometry)
    inputs, prompt = pruned_inputs(case, kept)
    _, calls = llm_calls(case.model, lambda: generate(case.model, inputs))
    received = calls[0]["deepstack_visual_embeds"]
    stock_layers = [layer[0] for layer in case.features.deepstack_features]
    assert len(received) == len(stock_layers) == 2
    for got, full in zip(received, stock_layers, strict=True):
        reference = torch.stack([full[int(t)] for t in sorted(kept.tolist())])
        assert torch.equal(got, reference)
    mask = calls[0]["visual_pos_masks"][0]
    assert mask.nonzero()[:, 0].tolist() == (
        (prompt.input_ids[0] == case.model.config.image_token_id).nonzero()[:, 0].tolist()
    )


def test_dart_prunes_the_same_way(checkpoints: dict[str, Path]) -> None:
    case = make_case(checkpoints["tiny-qwen3-vl"], SHAPES["square"])
    features = case.features.pooler_output[0].detach().numpy()[None]
    selection = select_tokens(case.geometry, "dart", None, None, ratio=0.2, features=features)  # type: ignore[arg-type]
    assert selection.num_kept == case.geometry.num_tokens // 5
    inputs, prompt = pruned_inputs(case, selection.kept[0])
    out = generate(case.model, inputs)
    assert out.shape == (1, prompt.input_ids.shape[1] + NEW_TOKENS)


def test_mid_preset_is_qwen3_vl_2b_shaped() -> None:
    config = make_config("mid-qwen3-vl")
    reference = qwen3_vl_2b_config()
    for name in ("depth", "hidden_size", "num_heads", "out_hidden_size", "patch_size"):
        assert getattr(config.vision_config, name) == getattr(reference.vision_config, name)
    assert list(config.vision_config.deepstack_visual_indexes) == [5, 11, 17]
    for name in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_key_value_heads"):
        assert getattr(config.text_config, name) == getattr(reference.text_config, name)
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    vocab_gap = (reference.text_config.vocab_size - config.text_config.vocab_size) * 2048
    billions = (sum(p.numel() for p in model.parameters()) + vocab_gap) / 1e9
    assert 2.0 <= billions <= 2.2  # Qwen3-VL-2B's size once the full vocabulary is added back
