"""The tiny InternVL / SmolVLM presets: stock models that generate from the stock processor path.

Next session's HiRED runtime is compared against exactly this path: the saved image processor
(tiling asked for as `InternVLProcessor` does; SmolVLM's splits by default), the saved chat
template, the image placeholder expanded as the stock processors expand it
(`edge_hired.hired.tile_prompts`, checked against them in the unit tests), then `generate`. The
saved processors' pixel_values must also have our geometry's image count and order, crop for
crop, and the token expansion must hold exactly one image token per visual feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    GotOcr2ImageProcessorPil,
    InternVLForConditionalGeneration,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from edge_hired.hired import Selection
from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.hired.tile_prompts import image_prompt
from edge_hired.hired.tile_select import kept_counts, select_tile_tokens, to_partition_order
from edge_hired.hired.tiles import TileGeometry
from edge_hired.models.presets import PRESETS
from edge_hired.models.tiny import build_checkpoint
from tests.integration.test_tiles_reference import assert_crops, noise, smolvlm_reference

NEW_TOKENS = 4
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiles")
    return {name: build_checkpoint(name, root / name) for name in ("tiny-internvl", "tiny-smolvlm")}


def prompt_ids(
    directory: Path, placeholder: str, geometry: TileGeometry
) -> dict[str, torch.Tensor]:
    """The chat prompt with the image placeholder expanded, tokenized."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text.count(placeholder) == 1
    return tokenizer(text.replace(placeholder, image_prompt(geometry)), return_tensors="pt")


def generate(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )


def test_tiny_presets_are_declared_with_their_geometry() -> None:
    internvl, smolvlm = PRESETS["tiny-internvl"], PRESETS["tiny-smolvlm"]
    assert (internvl.family, internvl.has_cls, internvl.tokens_per_tile) == ("internvl", True, 256)
    assert (smolvlm.family, smolvlm.has_cls, smolvlm.tokens_per_tile) == ("smolvlm", False, 64)


@pytest.mark.parametrize("size", [(448, 896), (448, 448)])
def test_tiny_internvl_generates_through_the_stock_path(
    checkpoints: dict[str, Path], size: tuple[int, int]
) -> None:
    directory = checkpoints["tiny-internvl"]
    processor = GotOcr2ImageProcessorPil.from_pretrained(directory)
    assert processor.crop_to_patches is False  # as the hub ships it: the caller turns tiling on
    image, geometry = noise(*size), internvl_geometry(size)
    pixels = processor(image, crop_to_patches=True, return_tensors="pt")
    assert pixels["num_patches"].tolist() == [geometry.num_partitions]
    height, width = geometry.canvas
    canvas = processor(image, crop_to_patches=False, size={"height": height, "width": width})
    whole = processor(image, crop_to_patches=False)["pixel_values"][0]
    assert_crops(geometry, list(pixels["pixel_values"].numpy()), canvas["pixel_values"][0], whole)

    model = InternVLForConditionalGeneration.from_pretrained(directory).eval()
    inputs = prompt_ids(directory, "<IMG_CONTEXT>", geometry)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == geometry.num_tokens
    features = model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    assert features.shape[:2] == (geometry.num_partitions, geometry.tokens_per_partition)
    out = generate(model, {**inputs, "pixel_values": pixels["pixel_values"]})
    assert out.shape == (1, inputs["input_ids"].shape[1] + NEW_TOKENS)
    assert torch.equal(out, generate(model, {**inputs, "pixel_values": pixels["pixel_values"]}))


@pytest.mark.parametrize("size", [(200, 1024), (300, 400)])
def test_tiny_smolvlm_generates_through_the_stock_path(
    checkpoints: dict[str, Path], size: tuple[int, int]
) -> None:
    directory = checkpoints["tiny-smolvlm"]
    processor = SmolVLMImageProcessorPil.from_pretrained(directory)
    image, geometry = noise(*size), smolvlm_geometry(size)
    pixels = processor(image, return_row_col_info=True, return_tensors="pt")
    assert (pixels["rows"], pixels["cols"]) == ([[geometry.grid[0]]], [[geometry.grid[1]]])
    canvas, whole = smolvlm_reference(processor, image, geometry, processor.size["longest_edge"])
    assert_crops(geometry, list(pixels["pixel_values"][0].numpy()), canvas, whole)

    model = SmolVLMForConditionalGeneration.from_pretrained(directory).eval()
    inputs = prompt_ids(directory, "<image>", geometry)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == geometry.num_tokens
    images = {k: pixels[k] for k in ("pixel_values", "pixel_attention_mask")}
    features = model.get_image_features(**images).pooler_output[0]
    assert features.shape[0] == geometry.num_tokens
    out = generate(model, {**inputs, **images})
    assert out.shape == (1, inputs["input_ids"].shape[1] + NEW_TOKENS)
    assert torch.equal(out, generate(model, {**inputs, **images}))


# ---------------------------------------------------------------- kept features into the stock LLM


def partition_features(geometry: TileGeometry, stock: torch.Tensor) -> torch.Tensor:
    """Stock projected features [images x N, H] as [P, N, H] in HiRED's partition order."""
    per_image = stock.reshape(geometry.num_partitions, geometry.tokens_per_partition, -1)
    index = torch.from_numpy(to_partition_order(geometry, np.arange(geometry.num_partitions)))
    return per_image[index]


def selected(geometry: TileGeometry, ratio: float) -> Selection:
    """HiRED at `ratio` with seeded, well-separated synthetic signals (plumbing, not ranking)."""
    rng = np.random.default_rng(3)
    shape = (geometry.num_partitions, 2, geometry.patches_per_partition)
    return select_tile_tokens(geometry, "hired", rng.random(shape), rng.random(shape), ratio=ratio)


def kept_embeddings(geometry: TileGeometry, selection: Selection, stock: torch.Tensor) -> Any:
    """The kept tokens' features gathered by (partition, token) in the packing order."""
    by_part = partition_features(geometry, stock)
    order = torch.from_numpy(selection.order)
    return BaseModelOutputWithPooling(pooler_output=by_part[order[:, 0], order[:, 1]])


def reduced_prompt(directory: Path, placeholder: str, geometry: TileGeometry, counts: list[int]):  # type: ignore[no-untyped-def]
    tokenizer = AutoTokenizer.from_pretrained(directory)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    return tokenizer(text.replace(placeholder, image_prompt(geometry, counts)), return_tensors="pt")


@pytest.mark.parametrize("family", ["tiny-internvl", "tiny-smolvlm"])
def test_kept_features_feed_the_stock_llm_and_all_of_them_are_the_stock_model(
    checkpoints: dict[str, Path], family: str
) -> None:
    directory = checkpoints[family]
    image = noise(448, 896)
    if family == "tiny-internvl":
        geometry, placeholder = internvl_geometry((448, 896)), "<IMG_CONTEXT>"
        model = InternVLForConditionalGeneration.from_pretrained(directory).eval()
        proc = GotOcr2ImageProcessorPil.from_pretrained(directory)
        images = {
            "pixel_values": proc(image, crop_to_patches=True, return_tensors="pt")["pixel_values"]
        }
    else:
        geometry, placeholder = smolvlm_geometry((448, 896)), "<image>"
        model = SmolVLMForConditionalGeneration.from_pretrained(directory).eval()
        proc = SmolVLMImageProcessorPil.from_pretrained(directory)
        out = proc(image, return_tensors="pt")
        images = {k: out[k] for k in ("pixel_values", "pixel_attention_mask")}
    with torch.no_grad():
        pooled = model.get_image_features(**images).pooler_output
    stock_features = torch.cat(list(pooled)).reshape(geometry.num_tokens, -1)
    inputs = prompt_ids(directory, placeholder, geometry)
    stock = generate(model, {**inputs, **images})

    full = select_tile_tokens(geometry, "full", None, None)
    all_kept = kept_embeddings(geometry, full, stock_features)
    assert torch.equal(all_kept.pooler_output, stock_features)  # 100%: the stock sequence
    mine = generate(
        model,
        {
            **inputs,
            "mm_encoder_outputs": {"image": kept_embeddings(geometry, full, stock_features)},
        },
    )
    assert torch.equal(mine, stock)

    fifth = selected(geometry, 0.2)
    assert fifth.num_kept == geometry.num_tokens // 5
    if family == "tiny-smolvlm":
        # The stock SmolVLM merger of transformers 5.20 (the lowest supported) reshapes image
        # features in rows of `patch_size`, so it cannot take an arbitrary kept count; the runtime
        # fills the image slots itself, and test_tiled_selection.py / test_tiled_serve_show.py
        # run SmolVLM at 20% end to end on every supported transformers.
        return
    reduced = reduced_prompt(directory, placeholder, geometry, kept_counts(fifth))
    assert int((reduced["input_ids"] == model.config.image_token_id).sum()) == fifth.num_kept
    out = generate(
        model,
        {
            **reduced,
            "mm_encoder_outputs": {"image": kept_embeddings(geometry, fifth, stock_features)},
        },
    )
    assert out.shape == (1, reduced["input_ids"].shape[1] + NEW_TOKENS)
