"""Qwen3.5 in `serve` (issue 21): its Gated-DeltaNet layers keep a linear-attention state (a conv
state and a recurrent state, no keys or values per token) through the image cache and the batch.

- `run --json`, `serve` alone and `serve` batched with two other requests of other lengths (so
  the batch is left-padded) give the same token ids and text, greedy and seeded, per strategy.
- A second identical request takes the cached prefix (an image-cache hit) and answers the same;
  the cached tensors, the linear state after the prefix included, are left exactly as they were.
- In the engine: rows joined into one padded batch, one leaving midway, decode the tokens each
  decodes alone; a request without an image works (its cache knows the linear layers); a
  prefilled cache's `nbytes` is the hand count of its tensors from the config.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.engine import Batch, Engine, Prefill
from edge_hired.runtime.kv import LinearState, layers_of, nbytes, tensors_of
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.prefix import ImageInput, SelectionOptions, split_at_image
from edge_hired.runtime.prompts import conversation_ids
from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import served
from tests.integration.test_run_serve_equality import CASES, MODEL, answer, batched, cli, request

pytestmark = pytest.mark.integration

FAMILY = "tiny-qwen3.5"
MATRIX = [("greedy", "hired"), ("seeded", "hired"), ("greedy", "dart"), ("seeded", "resize")]
STEPS, LEAVES_AFTER = 8, 3  # batched decode steps; row 1 leaves after this many


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(FAMILY, tmp_path_factory.mktemp("serve-qwen35") / FAMILY)


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    config = ServeConfig(
        model=str(checkpoint), model_name=MODEL, device="cpu", max_batch=4, max_queue=16
    )
    with served(config) as (base, state):
        ready = state.require_ready()
        yield base, ready.scheduler, ready.cache


def picture(directory: Path, height: int, width: int, seed: int) -> Path:
    path = directory / f"qwen35-{height}x{width}-{seed}.png"
    textured_image(height, width, seed=seed).save(path)
    return path


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return picture(tmp_path_factory.mktemp("qwen35-image"), 300, 500, 3)


@pytest.mark.parametrize(("case", "strategy"), MATRIX)
def test_serve_alone_and_batched_equal_run(
    server, checkpoint: Path, image_file: Path, case: str, strategy: str, capsys, tmp_path
) -> None:
    base, scheduler, _cache = server
    flags, fields = CASES[case]
    payload = request(image_file, fields)
    payload["hired"] = {"budget": 0.2, "strategy": strategy}
    run_ids, run_text = cli(capsys, checkpoint, image_file, [*flags, "--strategy", strategy])
    alone_ids, alone_text = answer(base, payload)
    batch_ids, batch_text, rows_at_start = batched(base, scheduler, payload, tmp_path)
    assert rows_at_start == [0, 1, 2]  # it joined a batch holding the two others
    assert run_ids == alone_ids == batch_ids
    assert run_text == alone_text == batch_text


def post(base: str, payload: dict) -> dict:
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_cached_prefix_is_reused_and_never_changed(server, tmp_path: Path) -> None:
    base, _scheduler, cache = server
    image = picture(tmp_path, 280, 420, 41)
    payload = request(image, {"temperature": 0})
    before = set(cache.held())
    first = post(base, payload)
    added = [key for key in cache.held() if key not in before and key[0] == "prefix"]
    assert len(added) == 1
    stored = cache.get(added[0])
    assert {type(layer) for layer in stored.layers} == {LinearState, tuple}
    saved = [[t.clone() for t in tensors_of(layer)] for layer in stored.layers]
    second = post(base, payload)
    other = post(base, request(image, {"temperature": 0}, text="Why is it so?"))
    assert [first["hired"]["image_cache"], second["hired"]["image_cache"]] == ["miss", "hit"]
    assert second["hired"]["completion_token_ids"] == first["hired"]["completion_token_ids"]
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    assert other["hired"]["image_cache"] == "hit"  # another question on the same prefix
    assert cache.get(added[0]) is stored
    for layer, tensors in zip(stored.layers, saved, strict=True):
        assert all(torch.equal(t, s) for t, s in zip(tensors_of(layer), tensors, strict=True))


@pytest.fixture(scope="module")
def pipeline(checkpoint: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(checkpoint), "cpu", "float32")


def prefill_three(pipeline: Pipeline) -> list[Prefill]:
    """Three requests of three lengths: two images of other sizes, and one without an image."""
    engine, selection = pipeline.engine, SelectionOptions(ratio=0.3)
    image_id = pipeline.facts.image_token_id
    rows = []
    for (height, width, seed), prompt in [((224, 448, 5), "What is this?"), ((320, 320, 6), "Hi")]:
        prefix, suffix = split_at_image(pipeline.prompt_ids(prompt), image_id)
        image = ImageInput(textured_image(height, width, seed=seed))  # no sha256: never cached
        rows.append(engine.prefill(prefix, suffix, image, selection))
    text = [{"role": "user", "content": [{"type": "text", "text": "Say something long."}]}]
    ids = conversation_ids(pipeline.processor, text)
    return [*rows, engine.prefill(ids[:0], ids, None, selection)]


def first_tokens(prefills: list[Prefill]) -> list[int]:
    return [int(prefill.logits.argmax()) for prefill in prefills]


def decode_alone(engine: Engine, prefill: Prefill) -> list[int]:
    """Greedy tokens of one request decoded as a batch of one."""
    batch, (token,), position = Batch(engine), first_tokens([prefill]), prefill.prompt_tokens
    batch.join(prefill)
    tokens = [token]
    for step in range(STEPS):
        tokens.append(int(batch.step([tokens[-1]], [position + step])[0].argmax()))
    return tokens


def test_rows_leaving_a_padded_batch_decode_as_they_do_alone(pipeline: Pipeline) -> None:
    engine = pipeline.engine
    alone = [decode_alone(engine, prefill) for prefill in prefill_three(pipeline)]
    prefills = prefill_three(pipeline)
    assert len({prefill.prompt_tokens for prefill in prefills}) == 3
    batch = Batch(engine)
    for prefill in prefills:
        batch.join(prefill)
    assert int((batch.mask == 0).sum()) > 0  # the shorter rows are left-padded
    live, tokens = [0, 1, 2], [[token] for token in first_tokens(prefills)]
    for step in range(STEPS):
        if step == LEAVES_AFTER:
            batch.keep([0, 2])  # row 1 leaves; rows 0 and 2 go on
            live = [0, 2]
        positions = [prefills[row].prompt_tokens + step for row in live]
        logits = batch.step([tokens[row][-1] for row in live], positions)
        for row, picked in zip(live, logits.argmax(dim=-1).tolist(), strict=True):
            tokens[row].append(picked)
    assert tokens[0] == alone[0] and tokens[2] == alone[2]
    assert tokens[1] == alone[1][: LEAVES_AFTER + 1]


def test_nbytes_of_a_prefilled_cache_is_the_hand_count(pipeline: Pipeline) -> None:
    prefill = prefill_three(pipeline)[0]
    text = pipeline.llm_config
    kinds = text.layer_types
    conv = (2 * text.linear_num_key_heads * text.linear_key_head_dim) + (
        text.linear_num_value_heads * text.linear_value_head_dim
    )
    per_linear = conv * text.linear_conv_kernel_dim * 4  # float32 model
    recurrent = text.linear_num_value_heads * text.linear_key_head_dim * text.linear_value_head_dim
    per_linear += recurrent * 4  # float32 whatever the model's dtype
    per_full = 2 * text.num_key_value_heads * prefill.prompt_tokens * text.head_dim * 4
    linear = kinds.count("linear_attention")
    assert linear and kinds.count("full_attention")
    want = linear * per_linear + kinds.count("full_attention") * per_full
    assert nbytes(layers_of(prefill.cache)) == want
