"""`run --model` loads straight onto the device and can quantize the LLM as it loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_hired.cli.main import build_parser
from edge_hired.facts.run_facts import PlanSource, pipeline_run_facts, run_facts
from edge_hired.runtime import loading
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import textured_image

pytestmark = pytest.mark.integration


def test_weights_are_placed_by_from_pretrained_not_moved_after(
    tiny_next_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loading.FAMILIES["llava_next"]
    given: dict = {}

    class Recording:
        @staticmethod
        def from_pretrained(source, **kwargs):
            given.update(kwargs)
            model = real.from_pretrained(source, **kwargs)
            model.to = lambda *a, **k: pytest.fail(f"moved after loading: .to{a}")
            return model

    monkeypatch.setitem(loading.FAMILIES, "llava_next", Recording)
    Pipeline.from_pretrained(str(tiny_next_dir), device="cpu", dtype="bf16")
    assert given["device_map"] == {"": "cpu"}
    assert given["dtype"] == torch.bfloat16
    assert "quantization_config" not in given


@pytest.fixture(scope="module")
def pipeline_4bit(tiny_next_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu", quantization="4bit")


def test_quant_4bit_quantizes_the_language_model_alone(pipeline_4bit: Pipeline) -> None:
    import bitsandbytes as bnb

    model = pipeline_4bit.parts.llm
    quantized = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert quantized and all(n.startswith("model.language_model.") for n in quantized)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    result = pipeline_4bit.run(
        textured_image(300, 600), "What?", SelectionOptions(ratio=0.2), SamplingOptions(3)
    )
    assert len(result.token_ids) == 3
    assert "4bit" in pipeline_4bit.device_reason


def test_the_planner_counts_the_weights_as_loaded(
    tiny_next_dir: Path, pipeline_4bit: Pipeline
) -> None:
    plain = run_facts(str(tiny_next_dir), (300, 600), "What?", "cpu")
    four = run_facts(str(tiny_next_dir), (300, 600), "What?", "cpu", quantization="4bit")
    assert (plain.inputs.quantization, four.inputs.quantization) == ("none", "4bit")
    assert four.inputs.llm_weight_bytes < plain.inputs.llm_weight_bytes
    loaded = pipeline_run_facts(
        pipeline_4bit, PlanSource("model", str(tiny_next_dir)), (300, 600), "What?"
    )
    assert loaded.inputs.quantization == "4bit"


def test_run_accepts_quant() -> None:
    args = build_parser().parse_args(["run", "--model", "m", "--quant", "8bit"])
    assert args.quant == "8bit"
