"""`edge-hired serve` over HTTP: the CLI's exact tokens, the image cache, batching, errors."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from edge_hired.cli.main import main
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import data_url, metric_values, thread_server

pytestmark = pytest.mark.integration

MODEL = "tiny"
QUESTION = "What is in the picture?"
FOLLOW_UP = "How many shapes are there?"


def client_for(base: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def user_turn(url: str | None, text: str) -> dict:
    parts = [{"type": "text", "text": text}]
    if url:
        parts.insert(0, {"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": parts}


def ask(client: openai.OpenAI, messages: list[dict], max_tokens: int = 8, **hired):
    extra = {"hired": hired} if hired else None
    return client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0, extra_body=extra
    )


def hired_of(response) -> dict:
    return response.model_extra["hired"]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "wide.png"
    textured_image(400, 800, seed=3).save(path)
    return path


def file_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def base(tiny_next_dir: Path):
    config = ServeConfig(
        model=str(tiny_next_dir), model_name=MODEL, device="cpu", max_batch=4, max_queue=16
    )
    with thread_server(config) as url:
        yield url


def cli_tokens(capsys, source: list[str], image: Path, prompt: str, budget: str, new: int):
    argv = ["run", *source, "--image", str(image), "--prompt", prompt, "--budget", budget]
    code = main([*argv, "--json", "--max-new-tokens", str(new), "--device", "cpu"])
    out, _ = capsys.readouterr()
    assert code == 0
    return json.loads(out)


def test_greedy_answer_is_exactly_the_cli_tokens(capsys, base, tiny_next_dir, image_file) -> None:
    cli = cli_tokens(capsys, ["--model", str(tiny_next_dir)], image_file, QUESTION, "0.2", 12)
    response = ask(client_for(base), [user_turn(file_url(image_file), QUESTION)], 12, budget=0.2)
    hired = hired_of(response)
    assert hired["completion_token_ids"] == cli["token_ids"]
    assert response.choices[0].message.content == cli["text"]
    assert hired["visual_tokens_kept"] == cli["visual_tokens_kept"] == cli["budget_tokens"]
    assert response.usage.prompt_tokens == cli["llm_input_tokens"]
    assert response.usage.completion_tokens == len(cli["token_ids"])


@pytest.mark.parametrize("family", ["tiny_siglip_dir", "tiny_onevision_dir"])
def test_towers_without_cls_serve_the_cli_tokens(capsys, request, family, image_file) -> None:
    """SigLIP LLaVA and OneVision (attention-received signal) answer as `run` does."""
    model = request.getfixturevalue(family)
    cli = cli_tokens(capsys, ["--model", str(model)], image_file, QUESTION, "0.2", 8)
    config = ServeConfig(model=str(model), model_name=MODEL, device="cpu")
    with thread_server(config) as url:
        response = ask(client_for(url), [user_turn(file_url(image_file), QUESTION)], 8, budget=0.2)
    hired = hired_of(response)
    assert hired["completion_token_ids"] == cli["token_ids"]
    assert hired["visual_tokens_kept"] == cli["visual_tokens_kept"]


def test_bundle_server_gives_the_cli_bundle_tokens(
    capsys, tiny_next_dir, image_file, tmp_path_factory
) -> None:
    bundle = tmp_path_factory.mktemp("serve-bundle") / "tiny-fp32"
    export_bundle(str(tiny_next_dir), bundle, ExportOptions(quantization="none", dtype="fp32"))
    cli = cli_tokens(capsys, ["--bundle", str(bundle)], image_file, QUESTION, "0.3", 10)
    config = ServeConfig(bundle=str(bundle), model_name=MODEL, device="cpu")
    with thread_server(config) as url:
        response = ask(client_for(url), [user_turn(file_url(image_file), QUESTION)], 10, budget=0.3)
    assert hired_of(response)["completion_token_ids"] == cli["token_ids"]


def test_follow_up_hits_the_image_cache_and_answers_as_without_it(
    capsys, base, tiny_next_dir, image_file
) -> None:
    url, client = data_url(textured_image(500, 500, seed=21)), client_for(base)
    path = image_file.parent / "square.png"
    Image.open(io.BytesIO(base64.b64decode(url.split(",")[1]))).save(path)
    first = ask(client, [user_turn(url, QUESTION)], 10, tokens=300)
    again = ask(client, [user_turn(url, FOLLOW_UP)], 10, tokens=300)
    assert hired_of(first)["image_cache"] == "miss"
    assert hired_of(again)["image_cache"] == "hit"
    kept = hired_of(again)["visual_tokens_kept"]
    assert again.usage.prompt_tokens_details.cached_tokens >= kept == 300
    capsys.readouterr()
    argv = ["run", "--model", str(tiny_next_dir), "--image", str(path), "--tokens", "300"]
    for response, prompt in ((first, QUESTION), (again, FOLLOW_UP)):
        assert main([*argv, "--prompt", prompt, "--json", "--max-new-tokens", "10"]) == 0
        cli = json.loads(capsys.readouterr().out)
        assert hired_of(response)["completion_token_ids"] == cli["token_ids"]
    repeat = ask(client, [user_turn(url, QUESTION)], 10, tokens=300)  # cached prefix unchanged
    assert hired_of(repeat)["completion_token_ids"] == hired_of(first)["completion_token_ids"]


def test_next_turn_of_a_conversation_reuses_the_prefix(base) -> None:
    url, client = data_url(textured_image(336, 336, seed=8)), client_for(base)
    first = ask(client, [user_turn(url, QUESTION)], 6)
    turns = [
        user_turn(url, QUESTION),
        {"role": "assistant", "content": first.choices[0].message.content},
        user_turn(None, FOLLOW_UP),
    ]
    second = ask(client, turns, 6)
    assert hired_of(second)["image_cache"] == "hit"
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert (
        second.usage.prompt_tokens_details.cached_tokens >= hired_of(second)["visual_tokens_kept"]
    )


def test_batched_greedy_answers_equal_each_request_alone(base) -> None:
    client = client_for(base)
    requests = [
        ([user_turn(data_url(textured_image(300 + 60 * i, 500, seed=40 + i)), QUESTION)], 24)
        for i in range(4)
    ]
    alone = [hired_of(ask(client, m, n, budget=0.1))["completion_token_ids"] for m, n in requests]
    before = batch_steps(base)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda r: ask(client, r[0], r[1], budget=0.1), requests))
    assert [hired_of(r)["completion_token_ids"] for r in together] == alone
    after = batch_steps(base)
    assert after["rows"] - before["rows"] > after["steps"] - before["steps"]  # some steps batched


def batch_steps(base: str) -> dict[str, float]:
    values = metric_values(base)
    return {
        "steps": values["edge_hired_batch_size_count"],
        "rows": values["edge_hired_batch_size_sum"],
    }


def test_streaming_sends_chunks_then_usage_then_done(base, image_file) -> None:
    body = {
        "model": MODEL,
        "messages": [user_turn(file_url(image_file), QUESTION)],
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6
    assert events[-1]["hired"]["visual_tokens_kept"] > 0
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert len(events[-1]["hired"]["completion_token_ids"]) == 6 and text


def test_openai_client_streams_the_same_text(base, image_file) -> None:
    client, messages = client_for(base), [user_turn(file_url(image_file), FOLLOW_UP)]
    whole = ask(client, messages, 8).choices[0].message.content
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole


def test_models_and_health(base) -> None:
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    models = client_for(base).models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_stop_string_ends_the_answer_before_it(base, image_file) -> None:
    client, messages = client_for(base), [user_turn(file_url(image_file), QUESTION)]
    full = ask(client, messages, 12).choices[0].message.content
    stop = full[3:5]
    cut = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_metrics_export_every_documented_family(base, image_file) -> None:
    for _ in range(2):  # a miss or a hit, then a hit
        ask(client_for(base), [user_turn(file_url(image_file), QUESTION)], 3)
    text = httpx.get(f"{base}/metrics").text
    for name in (
        'edge_hired_requests_total{status="200"}',
        "edge_hired_ttft_seconds_bucket",
        "edge_hired_e2e_seconds_count",
        "edge_hired_visual_tokens_kept_sum",
        "edge_hired_queue_depth",
        "edge_hired_batch_size_count",
        'edge_hired_image_cache_total{result="hit"}',
        "edge_hired_rss_bytes",
        "edge_hired_peak_rss_bytes",
        "edge_hired_device_allocated_bytes",
    ):
        assert name in text, name
    assert metric_values(base)["edge_hired_rss_bytes"] > 50 * 2**20
