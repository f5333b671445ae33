"""The resize baseline: the tiled model with its own knob turned down is the stock model with
that processor setting, token for token (InternVL `max_patches`, SmolVLM `size.longest_edge`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    GotOcr2ImageProcessorPil,
    InternVLForConditionalGeneration,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
)

from edge_hired.hired.tile_prompts import image_prompt
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.runtime.tiled_knob import token_knob_for, with_token_knob
from tests.integration.test_tiled_runtime import GREEDY, NEW_TOKENS, PROMPT
from tests.integration.test_tiles_reference import noise

# preset -> (image size, knob, stock processor kwargs, tokens, model class, placeholder)
CASES = {
    "tiny-internvl": ((448, 1344), 2, {"crop_to_patches": True, "max_patches": 2}, 768,
                      InternVLForConditionalGeneration, "<IMG_CONTEXT>"),
    "tiny-smolvlm": ((300, 400), 1024, {"size": {"longest_edge": 1024}}, 320,
                     SmolVLMForConditionalGeneration, "<image>"),
}  # fmt: skip
PROCESSORS = {"tiny-internvl": GotOcr2ImageProcessorPil, "tiny-smolvlm": SmolVLMImageProcessorPil}


@pytest.mark.parametrize("name", list(CASES))
def test_knob_pipeline_is_the_stock_model_with_that_setting(tmp_path: Path, name: str) -> None:
    size, knob, stock_kwargs, tokens, model_cls, placeholder = CASES[name]
    directory = build_checkpoint(name, tmp_path / name)
    pipeline = Pipeline.from_pretrained(str(directory), device="cpu", dtype="float32")
    image = noise(*size, seed=1)
    assert token_knob_for(pipeline, size, tokens) == knob
    assert token_knob_for(pipeline, size, tokens - 1) < knob
    knobbed = with_token_knob(pipeline, knob)
    result = knobbed.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    assert result.visual_tokens_kept == result.visual_tokens_total == tokens

    pixels = PROCESSORS[name].from_pretrained(directory)(image, return_tensors="pt", **stock_kwargs)
    images = {k: pixels[k] for k in ("pixel_values", "pixel_attention_mask") if k in pixels}
    geometry = knobbed.facts.geometry_for(size)
    assert geometry.num_tokens == tokens
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}
    ]
    text = pipeline.processor.apply_chat_template(conversation)
    ids = pipeline.tokenizer(text.replace(placeholder, image_prompt(geometry)), return_tensors="pt")
    model = model_cls.from_pretrained(directory).eval()
    with torch.no_grad():
        stock = model.generate(**ids, **images, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert result.token_ids == stock[0, ids["input_ids"].shape[1] :].tolist()
    assert pipeline.facts.geometry_for(size).num_tokens > tokens  # the original is untouched


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_resize_runs_the_knob_that_fits_the_budget(tmp_path: Path, name: str) -> None:
    """`--strategy resize` on a tiled model = the knob pipeline at the largest setting whose
    layout sends at most the budget (the case's knob at exactly its token count)."""
    size, knob, _, tokens, _, _ = CASES[name]
    directory = build_checkpoint(name, tmp_path / name)
    pipeline = Pipeline.from_pretrained(str(directory), device="cpu", dtype="float32")
    image = noise(*size, seed=1)
    resized = pipeline.run(
        image, PROMPT, SelectionOptions(strategy="resize", tokens=tokens), GREEDY
    )
    knobbed = with_token_knob(pipeline, knob).run(
        image, PROMPT, SelectionOptions(strategy="full"), GREEDY
    )
    assert resized.token_ids == knobbed.token_ids
    assert (resized.strategy, resized.budget_tokens) == ("resize", tokens)
    assert resized.visual_tokens_kept == resized.visual_tokens_total == tokens
    fewer = pipeline.run(image, PROMPT, SelectionOptions(strategy="resize", tokens=tokens - 1))
    assert fewer.visual_tokens_kept < tokens - 1  # one knob step down: a whole tile fewer
