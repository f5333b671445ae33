"""The server under faults: disconnects, bursts, SIGTERM, and a tight memory cap."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from transformers import AutoProcessor

from edge_hired.serve.config import ServeConfig
from edge_hired.serve.conversation import prompt_ids
from edge_hired.serve.schemas import Message
from edge_hired.serve.server import build_planner
from tests.helpers import textured_image
from tests.integration.serve_support import data_url, metric_values, process_server, thread_server

pytestmark = pytest.mark.integration

MODEL = "tiny"
IMAGE = data_url(textured_image(400, 800, seed=9))


def body(max_tokens: int, stream: bool = False, text: str = "What?") -> dict:
    content = [{"type": "image_url", "image_url": {"url": IMAGE}}, {"type": "text", "text": text}]
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": True},
    }


def post(base: str, payload: dict) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)


@pytest.fixture(scope="module")
def one_slot(tiny_next_dir: Path):
    config = ServeConfig(
        model=str(tiny_next_dir), model_name=MODEL, device="cpu", max_batch=1, max_queue=2
    )
    with thread_server(config) as url:
        yield url


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_disconnect_mid_stream_stops_generation_and_frees_the_slot(one_slot) -> None:
    before = metric_values(one_slot)["edge_hired_generated_tokens_total"]
    url = f"{one_slot}/v1/chat/completions"
    with httpx.stream("POST", url, json=body(2000, stream=True), timeout=60) as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(6)]  # role chunk, a few tokens (with blank lines)
    assert wait_for(lambda: metric_values(one_slot)["edge_hired_requests_in_flight"] == 0)
    generated = metric_values(one_slot)["edge_hired_generated_tokens_total"] - before
    assert generated < 2000
    answer = post(one_slot, body(4))  # the only slot is free again
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4


def test_burst_beyond_the_queue_gets_503_with_retry_after(one_slot) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(one_slot, body(300)), range(8)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 3 and 503 in statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["type"] == "server_error"
    assert httpx.get(f"{one_slot}/health").json() == {"status": "ok"}


def test_sigterm_finishes_the_stream_in_flight_then_exits_0(tiny_next_dir) -> None:
    flags = ("--model", str(tiny_next_dir), "--model-name", MODEL, "--graceful-timeout", "120")
    with process_server(*flags) as (base, proc):
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            url = f"{base}/v1/chat/completions"
            with httpx.stream("POST", url, json=body(1500, stream=True), timeout=120) as response:
                for line in response.iter_lines():
                    started.set()
                    if line:
                        lines.append(line)

        reader = threading.Thread(target=read)
        reader.start()
        assert started.wait(60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(150) == 0
        reader.join(30)
    data = [json.loads(x.removeprefix("data: ")) for x in lines if x != "data: [DONE]"]
    assert lines[-1] == "data: [DONE]"
    assert data[-1]["usage"]["completion_tokens"] == 1500
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)


def admission(config: ServeConfig, tokens: int, max_new: int):
    """The server planner's admission of the test request asking `tokens` visual tokens."""
    from edge_hired.runtime.loading import model_facts, read_config

    planner = build_planner(config)
    messages = [Message.model_validate(m) for m in body(max_new)["messages"]]
    facts = model_facts(read_config(config.model))
    processor = AutoProcessor.from_pretrained(config.model)
    prompt = prompt_ids(processor, messages, facts.image_token_id)
    return planner.admit(facts.geometry_for((400, 800)), tokens, prompt.text_tokens, max_new)


def planned_bytes(model_dir: Path, tokens: int, max_new: int) -> int:
    """What the server's planner predicts for the test request at `tokens` visual tokens."""
    config = ServeConfig(model=str(model_dir), device="cpu", memory_cap_gib=16)
    cost = admission(config, tokens, max_new).cost
    return cost.kv_bytes + cost.rest_bytes


def test_ttft_target_holds_each_request_to_what_meets_it(tiny_next_dir) -> None:
    """--ttft-target lowers the kept tokens to the plan's TTFT fit; memory did not cap them."""
    from edge_hired.facts.run_facts import plan_for_run, run_facts

    facts = run_facts(str(tiny_next_dir), (400, 800), "What?", "cpu")
    full = plan_for_run(facts, "cpu", None, 8)  # roofline TTFT: the cpu profile has no fits
    target = 0.8 * full.predicted_ttft_s
    config = ServeConfig(
        model=str(tiny_next_dir), model_name=MODEL, device="cpu", ttft_target_s=target
    )
    planned = admission(config, full.budget_tokens, 8)
    assert 0 < planned.token_cap < full.budget_tokens and not planned.capped_by_memory
    with thread_server(config) as base:
        response = httpx.post(f"{base}/v1/chat/completions", json=body(8), timeout=120)
    assert response.status_code == 200, response.text
    hired = response.json()["hired"]
    assert hired["visual_tokens_kept"] == planned.token_cap < hired["visual_tokens_total"]
    assert hired["capped_by_memory"] is False


def test_tight_cap_serves_8_concurrent_requests_under_it(tiny_next_dir) -> None:
    # 800 tokens: past the point where the LLM's phase outgrows the encoder's, so each visual
    # token adds to the plan and the cap holds exactly one such request at a time
    cap = planned_bytes(tiny_next_dir, 800, 32)
    flags = ("--model", str(tiny_next_dir), "--model-name", MODEL, "--strategy", "hired")
    cap_gib = math.ceil(cap / 2**30 * 1e9) / 1e9  # rounded up: never a byte below the plan
    with process_server(*flags, "--memory-cap", f"{cap_gib:.9f}") as (base, proc):
        with ThreadPoolExecutor(8) as pool:
            payloads = [body(32, text=f"Question {i}?") for i in range(8)]
            responses = list(pool.map(lambda p: post(base, p), payloads))
        peak_kib = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")
            )
        )
        steps = metric_values(base)
    assert [r.status_code for r in responses] == [200] * 8, responses[0].text
    for response in responses:
        hired = response.json()["hired"]
        assert hired["capped_by_memory"] is True
        assert 790 <= hired["visual_tokens_kept"] <= 800 < hired["visual_tokens_total"]
    assert steps['edge_hired_batch_size_bucket{le="1.0"}'] == steps["edge_hired_batch_size_count"]
    assert peak_kib * 1024 < cap, f"peak {peak_kib / 1024:.0f} MiB over cap {cap / 2**20:.0f} MiB"
