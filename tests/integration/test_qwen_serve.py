"""`serve` for the Qwen families: the same tokens as `run`, alone and batched with others.

Rows of one batch carry their own M-RoPE continuation (each request's unpruned maximum + 1), so
a Qwen request decoded beside two others must answer as it does alone and as `run --json` does.
Strategies hired, dart and resize all go through the same engine (Qwen3.5: `test_qwen35_serve`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_hired.models.tiny import build_checkpoint
from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import served
from tests.integration.test_run_serve_equality import CASES, MODEL, answer, batched, cli, request

pytestmark = pytest.mark.integration

FAMILIES = ("tiny-qwen3-vl", "tiny-qwen2.5-vl")


@pytest.fixture(scope="module", params=FAMILIES)
def qwen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = build_checkpoint(request.param, tmp_path_factory.mktemp("serve") / request.param)
    config = ServeConfig(
        model=str(directory), model_name=MODEL, device="cpu", max_batch=4, max_queue=16
    )
    with served(config) as (base, state):
        yield directory, base, state.require_ready().scheduler


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qwen-image") / "wide.png"
    textured_image(300, 500, seed=3).save(path)
    return path


@pytest.mark.parametrize("strategy", ["hired", "dart", "resize"])
def test_serve_alone_and_batched_equal_run(
    qwen, strategy: str, capsys, image_file: Path, tmp_path: Path
) -> None:
    directory, base, scheduler = qwen
    flags, fields = CASES["greedy"]
    payload = request(image_file, fields)
    payload["hired"] = {"budget": 0.2, "strategy": strategy}
    run_ids, run_text = cli(capsys, directory, image_file, [*flags, "--strategy", strategy])
    alone_ids, alone_text = answer(base, payload)
    batch_ids, batch_text, rows_at_start = batched(base, scheduler, payload, tmp_path)
    assert rows_at_start == [0, 1, 2]
    assert run_ids == alone_ids == batch_ids
    assert run_text == alone_text == batch_text
