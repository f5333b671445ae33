"""InternVL3/3.5 and SmolVLM2 through edge-hired's own runtime (`Pipeline.run`), in-process.

At 100% the answer must be the stock model's (`generate` on the stock processor path: the PIL
image processor, tiling as `InternVLProcessor` asks, the placeholder expanded as the stock
processors expand it) token for token, and the LLM's input embeddings must be the stock ones bit
for bit, on the smallest grid, a wide grid and the largest grid of each family (InternVL also
one tile). The 20% case with rankings set by construction lives in test_tiled_selection.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import InternVLForConditionalGeneration, SmolVLMForConditionalGeneration

from edge_hired.hired.tile_prompts import image_prompt
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.pipeline import Pipeline, SamplingOptions, SelectionOptions
from tests.integration.test_tiles_reference import noise

PROMPT = "What is this?"
NEW_TOKENS = 6
GREEDY = SamplingOptions(max_new_tokens=NEW_TOKENS)
FAMILIES = {
    "tiny-internvl": ("<IMG_CONTEXT>", InternVLForConditionalGeneration),
    "tiny-smolvlm": ("<image>", SmolVLMForConditionalGeneration),
}
#: (height, width) -> grid: InternVL one tile, 1x2 (smallest tiled), 1x3 (wide), 3x4 (12 tiles,
#: the largest); SmolVLM 1x4 (smallest, wide), 3x4, 4x4 (largest).
SHAPES = {
    "tiny-internvl": {
        (448, 448): (0, 0),
        (448, 896): (1, 2),
        (448, 1344): (1, 3),
        (300, 400): (3, 4),
    },
    "tiny-smolvlm": {(200, 1024): (1, 4), (300, 400): (3, 4), (1024, 1024): (4, 4)},
}
CASES = [(name, size) for name, shapes in SHAPES.items() for size in shapes]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiled-runtime")
    return {name: build_checkpoint(name, root / name) for name in FAMILIES}


@pytest.fixture(scope="module")
def loaded(checkpoints: dict[str, Path]) -> dict[str, tuple[Pipeline, torch.nn.Module]]:
    out = {}
    for name, (_, model_cls) in FAMILIES.items():
        pipeline = Pipeline.from_pretrained(str(checkpoints[name]), device="cpu", dtype="float32")
        out[name] = (pipeline, model_cls.from_pretrained(checkpoints[name]).eval())
    return out


def stock_inputs(pipeline: Pipeline, name: str, image) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The stock processor path: chat template, expanded placeholder, PIL image processor."""
    placeholder = FAMILIES[name][0]
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}
    ]
    text = pipeline.processor.apply_chat_template(conversation)
    geometry = pipeline.facts.geometry_for((image.height, image.width))
    inputs = dict(
        pipeline.tokenizer(text.replace(placeholder, image_prompt(geometry)), return_tensors="pt")
    )
    pixels = pipeline.processor.image_processor(images=image, return_tensors="pt")
    return {
        **inputs,
        **{k: pixels[k] for k in ("pixel_values", "pixel_attention_mask") if k in pixels},
    }


def stock_embeddings(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the stock forward feeds its LLM: text embeddings with the image features scattered."""
    images = {k: v for k, v in inputs.items() if k.startswith("pixel")}
    with torch.no_grad():
        pooled = model.get_image_features(**images).pooler_output
        features = torch.cat([f.reshape(-1, f.shape[-1]) for f in pooled])
        embeds = model.get_input_embeddings()(inputs["input_ids"])[0]
    embeds[inputs["input_ids"][0] == model.config.image_token_id] = features
    return embeds


@pytest.mark.parametrize(("name", "size"), CASES)
def test_full_budget_is_the_stock_model_token_for_token(
    loaded: dict[str, tuple[Pipeline, torch.nn.Module]], name: str, size: tuple[int, int]
) -> None:
    pipeline, model = loaded[name]
    image = noise(*size, seed=sum(size))
    geometry = pipeline.facts.geometry_for(size)
    assert geometry.grid == SHAPES[name][size]
    inputs = stock_inputs(pipeline, name, image)
    with torch.no_grad():
        stock = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    result = pipeline.run(image, PROMPT, SelectionOptions(strategy="full"), GREEDY)
    assert result.token_ids == stock[0, inputs["input_ids"].shape[1] :].tolist()
    assert result.visual_tokens_kept == result.visual_tokens_total == geometry.num_tokens
    assert result.llm_input_tokens == inputs["input_ids"].shape[1]
    assert result.grid == list(geometry.reported_grid)
    assert result.kept == [list(range(geometry.tokens_per_partition))] * geometry.num_partitions

    pixels, _ = pipeline.preprocess(image)
    vision = pipeline.encode(pixels)
    chosen = pipeline.select(geometry, vision, SelectionOptions(strategy="full"))
    ours = pipeline.input_embeddings(PROMPT, vision, chosen)[0]
    assert torch.equal(ours, stock_embeddings(model, inputs))


def test_signal_names_the_tower(loaded: dict[str, tuple[Pipeline, torch.nn.Module]]) -> None:
    assert loaded["tiny-internvl"][0].facts.signal == "cls"
    assert loaded["tiny-smolvlm"][0].facts.signal == "received"
    result = loaded["tiny-smolvlm"][0].run(
        noise(300, 400), PROMPT, SelectionOptions(ratio=0.2), GREEDY
    )
    assert result.signal == "received" and result.grid == [3, 4]
    assert result.visual_tokens_kept == sum(result.partition_budgets) == 13 * 64 // 5
