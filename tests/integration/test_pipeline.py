"""The in-process pipeline is the stock model at 100% and exactly HiRED below it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
)

from edge_hired.hired import select_tokens
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import PROMPT, stock_generate, stock_inputs, textured_image

pytestmark = pytest.mark.integration

GREEDY = SamplingOptions(max_new_tokens=6)
# (height, width) giving each llava-v1.6 grid: 2x2, 1x2, 2x1, 1x3, 3x1.
GRID_SIZES = {
    (2, 2): (600, 640),
    (1, 2): (300, 600),
    (2, 1): (800, 400),
    (1, 3): (300, 1000),
    (3, 1): (1000, 300),
}


@pytest.fixture(scope="module")
def next_pipeline(tiny_next_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu")


@pytest.fixture(scope="module")
def next_stock(tiny_next_dir: Path):
    return LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir).eval()


@pytest.mark.parametrize("grid", list(GRID_SIZES))
@pytest.mark.parametrize(
    "options",
    [SelectionOptions(strategy="full"), SelectionOptions(strategy="hired", tokens=100_000)],
)
def test_full_budget_generates_exactly_the_stock_tokens(
    grid, options, next_pipeline, next_stock, tiny_next_dir
) -> None:
    image = textured_image(*GRID_SIZES[grid], seed=sum(grid))
    result = next_pipeline.run(image, PROMPT, options, GREEDY)
    inputs = stock_inputs(tiny_next_dir, image)
    assert result.grid == list(grid)
    assert result.visual_tokens_kept == result.visual_tokens_total
    assert result.llm_input_tokens == inputs["input_ids"].shape[1]
    assert result.token_ids == stock_generate(next_stock, inputs)


def test_full_budget_prefill_logits_match_stock(next_pipeline, next_stock, tiny_next_dir) -> None:
    image = textured_image(500, 900, seed=3)
    pipe = next_pipeline
    pixels, geometry = pipe.preprocess(image)
    vision = pipe.parts.encoder(pixels)
    embeds = pipe.input_embeddings(
        PROMPT, vision, pipe.select(geometry, vision, SelectionOptions("full"))
    )
    with torch.inference_mode():
        ours = next_stock(inputs_embeds=embeds).logits
        stock = next_stock(**stock_inputs(tiny_next_dir, image)).logits
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


def test_llava15_full_budget_matches_stock(tiny_llava_dir: Path) -> None:
    pipeline = Pipeline.from_pretrained(str(tiny_llava_dir), device="cpu")
    stock = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    image = textured_image(480, 640, seed=7)
    for options in (SelectionOptions(strategy="full"), SelectionOptions(tokens=576)):
        result = pipeline.run(image, PROMPT, options, GREEDY)
        assert result.grid == [1, 1] and result.visual_tokens_total == 576
        assert result.token_ids == stock_generate(stock, stock_inputs(tiny_llava_dir, image))


def eager_cls_rows(model_dir: Path, pixels: torch.Tensor, layers: tuple[int, int]):
    """Test-only reference: full attention maps from an eager run, CLS row, patch columns."""
    model = LlavaNextForConditionalGeneration.from_pretrained(
        model_dir, attn_implementation="eager"
    )
    with torch.inference_mode():
        out = model.model.vision_tower(pixels, output_attentions=True, output_hidden_states=True)
    rows = [out.attentions[layer][:, :, 0, 1:] for layer in layers]
    return rows, out.hidden_states[model.config.vision_feature_layer][:, 1:]


def test_cls_rows_equal_eager_attention_maps(next_pipeline, tiny_next_dir) -> None:
    pixels, _ = next_pipeline.preprocess(textured_image(640, 480, seed=11))
    vision = next_pipeline.parts.encoder(pixels)
    plan = next_pipeline.parts.facts.layers
    (init, final), features = eager_cls_rows(tiny_next_dir, pixels, (plan.l_init, plan.l_final))
    assert vision.cls_init.shape == (5, 4, 576)
    assert (vision.cls_init - init).abs().max() <= 1e-5
    assert (vision.cls_final - final).abs().max() <= 1e-5
    assert (vision.features - features).abs().max() <= 1e-5


def test_hired_at_20_percent_keeps_what_the_core_selects_on_reference_rows(
    next_pipeline, tiny_next_dir
) -> None:
    image = textured_image(560, 800, seed=5)
    pixels, geometry = next_pipeline.preprocess(image)
    plan = next_pipeline.parts.facts.layers
    (init, final), _ = eager_cls_rows(tiny_next_dir, pixels, (plan.l_init, plan.l_final))
    expected = select_tokens(geometry, "hired", init.numpy(), final.numpy(), ratio=0.2)
    seen: list[int] = []
    hook = next_pipeline.parts.llm.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        result = next_pipeline.run(image, PROMPT, SelectionOptions(ratio=0.2), GREEDY)
    finally:
        hook.remove()
    assert result.kept == [k.tolist() for k in expected.kept]
    assert result.visual_tokens_kept == expected.num_kept == int(0.2 * 5 * 576)
    text_tokens = next_pipeline.prompt_ids(PROMPT).shape[0]
    assert result.llm_input_tokens == text_tokens - 1 + len(expected.order)
    # the prefix (text before the image + kept visual tokens), the suffix, then one per token
    assert seen[0] + seen[1] == result.llm_input_tokens
    assert seen[2:] == [1] * (len(result.token_ids) - 1)


@pytest.mark.parametrize(
    "strategy", ["hired", "hired-ref", "spatial", "random", "prumerge", "prumerge+"]
)
def test_every_strategy_runs_end_to_end(strategy: str, next_pipeline) -> None:
    result = next_pipeline.run(
        textured_image(400, 700),
        PROMPT,
        SelectionOptions(strategy=strategy, ratio=0.3),
        SamplingOptions(max_new_tokens=2),
    )
    assert result.strategy == strategy
    assert result.visual_tokens_kept == sum(len(k) for k in result.kept)
    assert 0 < result.visual_tokens_kept <= result.visual_tokens_total
    assert len(result.token_ids) >= 1 and result.ttft_s > 0


def test_result_reports_every_field(next_pipeline) -> None:
    result = next_pipeline.run(
        textured_image(672, 672), PROMPT, SelectionOptions(ratio=0.2), GREEDY
    )
    data = result.to_dict()
    for key in (
        "text",
        "token_ids",
        "strategy",
        "budget_tokens",
        "visual_tokens_total",
        "visual_tokens_kept",
        "grid",
        "kept",
        "llm_input_tokens",
        "ttft_s",
        "decode_tokens_per_s",
        "peak_rss_mib",
    ):
        assert key in data
    assert data["grid"] == [2, 2] and len(data["kept"]) == 5
    assert data["visual_tokens_total"] == 5 * 576 and data["budget_tokens"] == 576
    assert all(k == sorted(set(k)) for k in data["kept"])
    assert data["peak_rss_mib"] > 50
    assert np.isclose(
        sum(
            data["timings_s"][k]
            for k in ("preprocess", "encode", "select", "prefill_to_first_token")
        ),
        data["ttft_s"],
        atol=1e-3,
    )
