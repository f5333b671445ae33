"""The Qwen3-VL / Qwen2.5-VL / Qwen3.5 presets through edge-hired's own runtime (`Pipeline.run`).

- 100%: `run` equals stock `generate` token for token, for each family on a square, a wide and a
  tall image.
- 20%: exactly the budget is kept, and (with the signal block's q / k scaled up, so rankings are
  well separated) the kept merge units are the global top-k of a reference signal computed here
  from the block's full attention maps (recorded through transformers' attention interface, not
  our chunked code), summed per merge unit, Qwen2.5-VL's window order undone by the stock index.
- The position ids the LLM receives for kept tokens are the stock ones at those columns, and
  decoding continues at the unpruned maximum + 1; Qwen3-VL's DeepStack features arrive pruned at
  the kept tokens (against a reference pruning of the stock features written here).
- `dart` keeps what the pure `dart` rule keeps on the stock merged features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.models.qwen3_vl.modeling_qwen3_vl import eager_attention_forward

from edge_hired.hired import select_tokens
from edge_hired.hired.native_geometry import window_index
from edge_hired.hired.native_resize import resize_limits, tokens_under
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.prefix import SelectionOptions
from edge_hired.runtime.sampling import SamplingOptions
from tests.integration.test_tiles_reference import noise

NEW_TOKENS = 5
PROMPT = "What is this?"
FAMILIES = ("tiny-qwen3-vl", "tiny-qwen2.5-vl", "tiny-qwen3.5")
SHAPES = {"square": (256, 256), "wide": (224, 448), "tall": (448, 224)}
RECORDED: list[tuple[Any, torch.Tensor]] = []


def recording_attention(module: Any, *args: Any, **kwargs: Any) -> tuple:
    """Eager attention that keeps its weights (the reference signal's full maps)."""
    out, weights = eager_attention_forward(module, *args, **kwargs)
    RECORDED.append((module, weights.detach().float()))
    return out, weights


AttentionInterface.register("edge_hired_recording", recording_attention)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-runtime")
    return {name: build_checkpoint(name, root / name) for name in FAMILIES}


def load(directory: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(directory), "cpu", "float32")


@pytest.fixture(scope="module")
def pipelines(checkpoints: dict[str, Path]) -> dict[str, Pipeline]:
    return {name: load(directory) for name, directory in checkpoints.items()}


def run(pipeline: Pipeline, picture: Any, strategy: str, ratio: float | None) -> Any:
    options = SelectionOptions(strategy=strategy, ratio=ratio)
    return pipeline.run(picture, PROMPT, options, SamplingOptions(max_new_tokens=NEW_TOKENS))


def stock_inputs(pipeline: Pipeline, picture: Any, pixels: Any = None) -> dict[str, torch.Tensor]:
    """The stock processor's inputs: the chat prompt with N placeholders, patches, grid."""
    if pixels is None:
        pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // 4
    ids = pipeline.prompt_ids(PROMPT)
    image_id = pipeline.facts.image_token_id
    at = int((ids == image_id).nonzero()[0, 0])
    ids = torch.cat([ids[:at], ids.new_full((count,), image_id), ids[at + 1 :]])[None]
    types = (ids == image_id).to(torch.int32)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **pixels,
            "mm_token_type_ids": types}  # fmt: skip


def stock_generate(pipeline: Pipeline, inputs: dict[str, torch.Tensor]) -> list[int]:
    with torch.no_grad():
        out = pipeline.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def llm_calls(pipeline: Pipeline, action: Any) -> tuple[Any, list[dict]]:
    """Run `action`, recording what the language model receives at each call."""
    calls: list[dict] = []
    names = ("position_ids", "deepstack_visual_embeds", "visual_pos_masks", "inputs_embeds")

    def record(_module: Any, _args: Any, kwargs: dict) -> None:
        calls.append({k: kwargs.get(k) for k in names})

    language_model = pipeline.model.model.language_model
    handle = language_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        return action(), calls
    finally:
        handle.remove()


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_full_budget_is_stock_generate(
    pipelines: dict[str, Pipeline], family: str, shape: str
) -> None:
    pipeline, picture = pipelines[family], noise(*SHAPES[shape])
    stock = stock_generate(pipeline, stock_inputs(pipeline, picture))
    for strategy, ratio in (("hired", 1.0), ("full", None), ("dart", 1.0)):
        result = run(pipeline, picture, strategy, ratio)
        assert result.token_ids == stock, (strategy, result.token_ids, stock)
        assert result.grid == [1, 1]
        assert result.kept == [list(range(result.visual_tokens_total))]


def sharpen(pipeline: Pipeline, scale: float = 20.0) -> None:
    """Scale the signal block's q and k weights: peaky attention, well-separated rankings."""
    block = pipeline.facts.layers.l_final
    qkv = pipeline.model.model.visual.blocks[block].attn.qkv
    width = qkv.weight.shape[1]
    with torch.no_grad():
        qkv.weight[: 2 * width] *= scale
        qkv.bias[: 2 * width] *= scale


def reference_signal(pipeline: Pipeline, picture: Any) -> np.ndarray:
    """[N] attention received at the signal block from its full maps, summed per merge unit."""
    visual = pipeline.model.model.visual
    config = visual.config
    pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt")
    saved, config._attn_implementation = config._attn_implementation, "edge_hired_recording"
    RECORDED.clear()
    try:
        with torch.no_grad():
            visual(pixels["pixel_values"], grid_thw=pixels["image_grid_thw"])
    finally:
        config._attn_implementation = saved
    block = visual.blocks[pipeline.facts.layers.l_final].attn
    [maps] = [w for module, w in RECORDED if module is block]  # full attention: one chunk
    received = maps[0].mean(dim=1).sum(dim=0).numpy()  # mean over queries, sum over heads
    geometry = pipeline.facts.geometry_for((picture.height, picture.width))
    if getattr(config, "fullatt_block_indexes", None):
        units = window_index(geometry, config.window_size)  # stock unit at each window slot
        order = (units[:, None] * 4 + np.arange(4)).reshape(-1)
        stock = np.empty_like(received)
        stock[order] = received
        received = stock
    return received.reshape(-1, 4).sum(axis=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_fifth_keeps_the_global_top_k_of_the_signal(
    checkpoints: dict[str, Path], family: str
) -> None:
    pipeline, picture = load(checkpoints[family]), noise(*SHAPES["wide"], seed=3)
    sharpen(pipeline)  # its own copy: the shared pipelines stay stock
    signal = reference_signal(pipeline, picture)
    result = run(pipeline, picture, "hired", 0.2)
    budget = result.visual_tokens_total // 5
    assert result.visual_tokens_kept == budget == len(result.kept[0])
    ranked = np.sort(signal)[::-1]
    assert ranked[budget - 1] - ranked[budget] > 1e-3 * ranked[0]  # well separated at the cut
    top = np.sort(np.argsort(-signal, kind="stable")[:budget])
    assert result.kept[0] == top.tolist()


def stock_prefill_positions(pipeline: Pipeline, picture: Any) -> tuple[torch.Tensor, Any]:
    inputs = stock_inputs(pipeline, picture)
    _, calls = llm_calls(pipeline, lambda: stock_generate(pipeline, inputs))
    return inputs["input_ids"], calls


@pytest.mark.parametrize("family", FAMILIES)
def test_kept_tokens_get_the_stock_positions(pipelines: dict[str, Pipeline], family: str) -> None:
    pipeline, picture = pipelines[family], noise(*SHAPES["tall"])
    ids, stock_calls = stock_prefill_positions(pipeline, picture)
    result, calls = llm_calls(pipeline, lambda: run(pipeline, picture, "hired", 0.2))
    image_cols = (ids[0] == pipeline.facts.image_token_id).nonzero()[:, 0].numpy()
    keep = np.ones(ids.shape[1], dtype=bool)
    keep[image_cols] = False
    keep[image_cols[result.kept[0]]] = True
    columns = torch.from_numpy(np.flatnonzero(keep))
    prefill = torch.cat([calls[0]["position_ids"], calls[1]["position_ids"]], dim=-1)
    stock = stock_calls[0]["position_ids"]
    assert torch.equal(prefill[1:], stock[1:, :, columns])
    assert prefill[0, 0].tolist() == list(range(len(columns)))
    first_decode = calls[2]["position_ids"]
    assert torch.equal(first_decode[1:], stock_calls[1]["position_ids"][1:])
    assert int(first_decode[1:].max()) == int(stock[1:].max()) + 1


def test_deepstack_is_pruned_at_the_kept_tokens(pipelines: dict[str, Pipeline]) -> None:
    pipeline, picture = pipelines["tiny-qwen3-vl"], noise(*SHAPES["wide"])
    pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt")
    with torch.no_grad():
        stock = pipeline.model.model.get_image_features(
            pixels["pixel_values"], pixels["image_grid_thw"]
        )
    result, calls = llm_calls(pipeline, lambda: run(pipeline, picture, "hired", 0.2))
    received = calls[0]["deepstack_visual_embeds"]
    assert len(received) == len(stock.deepstack_features) == 2
    for got, layer in zip(received, stock.deepstack_features, strict=True):
        reference = torch.stack([layer[0][t] for t in result.kept[0]])
        assert torch.equal(got, reference)
    mask = calls[0]["visual_pos_masks"][0]
    assert int(mask.sum()) == len(result.kept[0]) == result.visual_tokens_total // 5


@pytest.mark.parametrize("family", FAMILIES)
def test_dart_keeps_what_the_rule_keeps(pipelines: dict[str, Pipeline], family: str) -> None:
    pipeline, picture = pipelines[family], noise(*SHAPES["square"])
    pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt")
    with torch.no_grad():
        stock = pipeline.model.model.get_image_features(
            pixels["pixel_values"], pixels["image_grid_thw"]
        )
    features = stock.pooler_output[0].numpy()[None]
    geometry = pipeline.facts.geometry_for((picture.height, picture.width))
    rule = select_tokens(geometry, "dart", None, None, ratio=0.2, features=features)  # type: ignore[arg-type]
    result = run(pipeline, picture, "dart", 0.2)
    assert result.visual_tokens_kept == geometry.num_tokens // 5
    assert result.kept[0] == rule.kept[0].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_resize_is_the_stock_model_on_the_shrunk_image(
    pipelines: dict[str, Pipeline], family: str
) -> None:
    pipeline, picture = pipelines[family], noise(*SHAPES["wide"])
    facts = pipeline.facts
    full = facts.geometry_for((picture.height, picture.width))
    budget = full.num_tokens // 5
    low, cap = resize_limits(full, budget, facts.min_pixels)
    result = run(pipeline, picture, "resize", 0.2)
    assert result.budget_tokens == budget
    assert result.visual_tokens_kept == tokens_under(full, low, cap) <= budget
    size = {"shortest_edge": low, "longest_edge": cap}
    pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt", size=size)
    inputs = stock_inputs(pipeline, picture, pixels)
    assert inputs["image_grid_thw"].prod() // 4 == result.visual_tokens_kept
    assert result.token_ids == stock_generate(pipeline, inputs)
