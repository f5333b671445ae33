"""Issue 17's acceptance: one request gives the same token ids and text from `run` (the CLI,
`--json`), from `serve` alone, and from `serve` in a batch with other requests, greedy and
seeded-sampled: both go through `runtime.engine` and `runtime.sampling`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from edge_hired.cli.main import main
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.events import Started
from tests.helpers import textured_image
from tests.integration.serve_support import served

pytestmark = pytest.mark.integration

MODEL = "tiny"
PROMPT = "Describe the picture."
NEW = 12
LONG = 300  # the other requests' length: they decode all through the request under test
# the CLI flags and the request fields that mean the same sampling
CASES = {
    "greedy": ([], {"temperature": 0}),
    "seeded": (
        ["--do-sample", "--temperature", "0.9", "--top-p", "0.9", "--top-k", "40", "--seed", "5"],
        {"temperature": 0.9, "top_p": 0.9, "top_k": 40, "seed": 5},
    ),
    "penalised": (
        ["--do-sample", "--temperature", "1.3", "--repetition-penalty", "1.3", "--seed", "11"],
        {"temperature": 1.3, "repetition_penalty": 1.3, "seed": 11},
    ),
}


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("equality") / "wide.png"
    textured_image(400, 800, seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_next_dir: Path):
    config = ServeConfig(
        model=str(tiny_next_dir), model_name=MODEL, device="cpu", max_batch=4, max_queue=16
    )
    with served(config) as (base, state):
        yield base, state.require_ready().scheduler


def request(image: Path, fields: dict, max_tokens: int = NEW, text: str = PROMPT) -> dict:
    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "hired": {"budget": 0.2},
        **fields,
    }


def answer(base: str, payload: dict) -> tuple[list[int], str]:
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["hired"]["completion_token_ids"], body["choices"][0]["message"]["content"]


def cli(capsys, model: Path, image: Path, flags: list[str]) -> tuple[list[int], str]:
    argv = ["run", "--model", str(model), "--image", str(image), "--prompt", PROMPT]
    argv += ["--budget", "0.2", "--max-new-tokens", str(NEW), "--device", "cpu", "--json"]
    assert main([*argv, *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    return result["token_ids"], result["text"]


def batched(base: str, scheduler, payload: dict, tmp_path: Path) -> tuple[list[int], str, list]:
    """The answer decoded in one batch with two other requests; and each one's rows at start.

    The worker is held at the first other request's prefill until the second and this one wait
    in the queue, so all three join in the same admission pass and decode together.
    """
    others = [
        request(_image(tmp_path, 500, 500, 21), {"temperature": 0}, LONG, "What shapes?"),
        request(_image(tmp_path, 300, 600, 8), {"temperature": 1.0, "seed": 3}, LONG, "Colours?"),
    ]
    for other in others:  # their prefixes cached: prefilled at once when admitted
        answer(base, {**other, "max_tokens": 1})
    held, release, rows_at_start = threading.Event(), threading.Event(), []

    def listen(_job, event) -> None:
        if isinstance(event, Started):
            rows_at_start.append(len(scheduler.rows))
            if not held.is_set():
                held.set()
                release.wait(60)

    scheduler.listener = listen
    try:
        with ThreadPoolExecutor(3) as pool:
            try:
                pool.submit(answer, base, others[0])
                assert held.wait(60)
                pool.submit(answer, base, others[1])
                wait_until(lambda: len(scheduler.pending) == 1)
                ours = pool.submit(answer, base, payload)
                wait_until(lambda: len(scheduler.pending) == 2)
            finally:
                release.set()
            ids, text = ours.result(120)
    finally:
        scheduler.listener = None
    return ids, text, rows_at_start


def wait_until(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _image(directory: Path, height: int, width: int, seed: int) -> Path:
    path = directory / f"other-{seed}.png"
    textured_image(height, width, seed=seed).save(path)
    return path


@pytest.mark.parametrize("case", CASES)
def test_run_serve_alone_and_serve_batched_give_the_same_tokens_and_text(
    case, capsys, server, tiny_next_dir, image_file, tmp_path
) -> None:
    flags, fields = CASES[case]
    base, scheduler = server
    payload = request(image_file, fields)
    run_ids, run_text = cli(capsys, tiny_next_dir, image_file, flags)
    alone_ids, alone_text = answer(base, payload)
    batch_ids, batch_text, rows_at_start = batched(base, scheduler, payload, tmp_path)
    assert rows_at_start == [0, 1, 2]  # it joined a batch holding the two others
    assert run_ids == alone_ids == batch_ids
    assert run_text == alone_text == batch_text
    assert len(run_ids) == NEW or run_ids[-1] in scheduler.engine.eos_ids
    print(f"\n{case}: {run_ids} {run_text!r}")


def test_different_seeds_sample_different_answers(server, image_file) -> None:
    base, _ = server
    fields = CASES["seeded"][1]
    first, _ = answer(base, request(image_file, fields))
    second, _ = answer(base, request(image_file, {**fields, "seed": 6}))
    assert first != second  # the seed reaches the sampler (the equality above is not vacuous)
