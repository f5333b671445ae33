"""Issue 17 #2: a non-streaming request whose client leaves is cancelled like a streaming one.

With one slot (--max-batch 1), a long non-streaming answer whose client gives up after 1 s must
leave the batch at the next step and free its reservation, so the next request starts at once.
Asserted on the scheduler's events and step count, not on wall-clock margins.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from edge_hired.serve.config import ServeConfig
from edge_hired.serve.events import Done, Started, Token
from tests.helpers import textured_image
from tests.integration.serve_support import data_url, served

pytestmark = pytest.mark.integration

MODEL = "tiny"
LONG = 3000  # with EOS held off (min_new_tokens), far more than 1 s of decoding on any CPU
IMAGE = data_url(textured_image(400, 800, seed=9))


def body(max_tokens: int) -> dict:
    content = [{"type": "image_url", "image_url": {"url": IMAGE}}, {"type": "text", "text": "Hi"}]
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "hired": {"tokens": 16},
    }


def test_a_non_streaming_client_that_leaves_frees_the_only_slot(tiny_next_dir: Path) -> None:
    config = ServeConfig(
        model=str(tiny_next_dir), model_name=MODEL, device="cpu", max_batch=1, max_queue=4
    )
    with served(config) as (base, state):
        scheduler = state.require_ready().scheduler
        scheduler.engine.parts.llm.generation_config.min_new_tokens = LONG  # no early EOS
        seen: list[tuple[object, object, int, float]] = []  # (job, event, steps so far, time)
        scheduler.listener = lambda job, event: seen.append(
            (job, event, scheduler.steps, time.perf_counter())
        )
        url = f"{base}/v1/chat/completions"
        assert httpx.post(url, json=body(2), timeout=120).status_code == 200  # warm, cached
        seen.clear()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body(LONG), timeout=httpx.Timeout(60, read=1.0))
        left = time.perf_counter()
        answer = httpx.post(url, json=body(4), timeout=120)
        waited = time.perf_counter() - left
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
    first, second = {id(job): job for job, *_ in seen}.values()  # in the order first seen
    ((done, done_step, done_at),) = [
        (e, s, t) for j, e, s, t in seen if j is first and isinstance(e, Done)
    ]
    tokens = sum(isinstance(e, Token) for j, e, *_ in seen if j is first)
    assert done.reason == "cancelled" and tokens == done.generated < LONG
    # it ran at most the one step in flight when the server learnt the client had gone ...
    assert done_step - first.cancelled_at_step <= 1
    # ... and the next request was prefilled before any further step
    (started_step,) = [s for j, e, s, _ in seen if j is second and isinstance(e, Started)]
    assert started_step == done_step
    assert not state.require_ready().scheduler.gate.in_flight  # every reservation released
    print(
        f"\nabandoned request: {done.generated} tokens, {done_step - first.cancelled_at_step} "
        f"step(s) after the server saw the disconnect, left the batch "
        f"{done_at - left:+.3f} s after its client; the next request answered "
        f"{waited:.3f} s after the first client left"
    )
