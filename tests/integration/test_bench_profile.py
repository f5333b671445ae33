"""`edge-hired bench --profile`: the memory planner's cap per image is recorded and applied.

A profile written for the test (a copy of `profiles/cpu.toml` with a fixed total memory, found
through EDGE_HIRED_PROFILES) leaves room for about 1400 of the tiny model's 2208 visual tokens
on the sample image, so the cap binds on `full` (which then runs as hired at the cap) and not on
hired@0.2 (576 tokens).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_hired.cli.main import main
from edge_hired.data import sample_image_path
from edge_hired.facts.run_facts import PlanSource, plan_for_pipeline
from edge_hired.models.tiny import build_checkpoint
from edge_hired.planner.arithmetic import Plan
from edge_hired.profiles import PROFILES_ENV
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.units import GIB

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Describe the image."
NEW_TOKENS = 2
TARGET_TOKENS = 1400


def write_profile(folder: Path, total_gib: float) -> None:
    """profiles/cpu.toml as 'small-box', its memory a fixed `total_gib` instead of MemAvailable."""
    text = (REPO / "profiles" / "cpu.toml").read_text()
    text = text.replace('name = "cpu"', 'name = "small-box"')
    text = re.sub(r'source = "meminfo".*', f'source = "fixed"\ntotal_gib = {total_gib!r}', text)
    (folder / "small-box.toml").write_text(text)


def plan(pipeline: Pipeline, model: Path) -> Plan:
    image = load_image(sample_image_path())
    return plan_for_pipeline(
        pipeline,
        PlanSource("model", str(model)),
        "small-box",
        (image.height, image.width),
        PROMPT,
        NEW_TOKENS,
    )


@pytest.fixture
def setup(tmp_path: Path, monkeypatch) -> tuple[Path, Pipeline]:
    """The tiny checkpoint and its pipeline; 'small-box' caps the sample near TARGET_TOKENS."""
    model = build_checkpoint("tiny-llava-next", tmp_path / "tiny-next")
    pipeline = Pipeline.from_pretrained(str(model), device="cpu")
    folder = tmp_path / "profiles"
    folder.mkdir()
    monkeypatch.setenv(PROFILES_ENV, str(folder))
    write_profile(folder, 64.0)
    roomy = plan(pipeline, model)
    assert roomy.budget_tokens == roomy.visual_tokens_available
    short = (roomy.visual_tokens_available - TARGET_TOKENS) * roomy.bytes_per_visual_token
    write_profile(folder, (roomy.required_bytes - short) / GIB)
    return model, pipeline


def test_bench_applies_the_profiles_planned_cap(setup, tmp_path: Path) -> None:
    model, pipeline = setup
    argv = [
        "bench",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--profile",
        "small-box",
        "--budgets",
        "full,0.2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--max-new-tokens",
        str(NEW_TOKENS),
        "--prompt",
        PROMPT,
        "--no-progress",
        "--no-plots",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    planned = plan(pipeline, model)
    cap = planned.budget_tokens
    assert 576 < cap < planned.visual_tokens_available
    environment = data["environment"]
    assert environment["profile_cap_tokens"] == cap
    assert environment["profile_caps"] == {str(sample_image_path()): cap}
    assert "applied to every setting" in environment["profile_note"]
    assert data["options"]["source"] == {"kind": "model", "path": str(model)}
    rows = {row["setting"]: row for row in data["rows"]}
    for row in rows.values():
        assert row["profile"] == "small-box" and row["profile_cap_tokens"] == cap
        assert row["visual_tokens_kept"] <= cap
    assert rows["full"]["visual_tokens_kept"] == cap  # full runs as hired at the cap
    assert rows["hired@0.2"]["visual_tokens_kept"] == 576  # floor(0.2 x 5 x 576): below the cap
    assert all(run["profile_cap_tokens"] == cap for run in data["runs"])
