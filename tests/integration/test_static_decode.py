"""Issue 19: decode on static KV caches with a compiled step gives the eager engine's tokens.

Fast tests compile with dynamo's `CompileCounter` backend (a real dynamo trace, run without
inductor) so they can count compiles; the two `slow` tests use inductor itself, from a cold
cache directory. Inputs are built so the outcome holds by construction: the logits are compared
step by step at a tolerance far below the eager run's gap between its best two tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch._dynamo.testing import CompileCounter

from edge_hired.cli.main import main
from edge_hired.planner.buckets import Bucket
from edge_hired.runtime.compile_policy import ANNOUNCEMENT, torch_compiler
from edge_hired.runtime.engine import Batch, Engine
from edge_hired.runtime.generation import GenerationRequest, generate
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.prefix import ImageInput, SelectionOptions
from edge_hired.runtime.sampling import SamplingOptions
from edge_hired.runtime.sources import load_target
from edge_hired.runtime.static_decode import StaticDecoder
from edge_hired.runtime.target import ModelSource, TargetFlags, resolve_target
from tests.helpers import textured_image

pytestmark = pytest.mark.integration

FED = [17, 301, 5, 99, 42, 7, 250, 3]  # teacher-forced tokens: every step sees a new input
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def pipeline(tiny_llava_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_llava_dir), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return textured_image(336, 336, seed=3)


def counted(counter: CompileCounter):
    """A compiler that traces with dynamo (whole graph, fixed shapes) and counts the traces."""
    return lambda step: torch.compile(step, backend=counter, fullgraph=True, dynamic=False)


def request(pipeline: Pipeline, image, prompt: str, tokens: int) -> GenerationRequest:
    prefix, suffix = pipeline._split(prompt)
    return GenerationRequest(prefix, suffix, ImageInput(image), SelectionOptions(tokens=tokens))


def fed_logits(engine: Engine, req: GenerationRequest, rows: int = 1) -> torch.Tensor:
    """Logits [steps, rows, V] of one prefill repeated in `rows` rows, fed FED."""
    prefill = engine.prefill(req.prefix_ids, req.suffix_ids, req.image, req.selection)
    batch, position = Batch(engine), prefill.prompt_tokens
    for _ in range(rows):
        batch.join(prefill, reserve=len(FED))
    steps = []
    for token in FED:
        steps.append(batch.step([token] * rows, [position] * rows))
        position += 1
    return torch.stack(steps)


def assert_same_choices(
    eager: torch.Tensor, static: torch.Tensor, tolerance: float = TOLERANCE
) -> None:
    """Close logits, and the best token decided by more than the difference."""
    assert (eager - static).abs().max() < tolerance
    top2 = eager.topk(2, dim=-1).values
    assert (top2[..., 0] - top2[..., 1]).min() > 2 * tolerance  # the case holds by construction
    assert torch.equal(eager.argmax(-1), static.argmax(-1))


def test_static_steps_match_eager_steps(pipeline, image) -> None:
    counter = CompileCounter()
    engine = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, counted(counter)))
    req = request(pipeline, image, "Describe the picture.", tokens=40)
    assert_same_choices(fed_logits(pipeline.engine, req), fed_logits(engine, req))
    assert counter.frame_count == 1


def test_ten_requests_in_a_bucket_compile_once_and_reuse_the_cache(pipeline, image) -> None:
    counter = CompileCounter()
    decoder = StaticDecoder(pipeline.model, counted(counter))
    engine = Engine(pipeline.parts, static=decoder)
    options = SamplingOptions(max_new_tokens=6)
    pointers, lengths = set(), set()
    for index in range(10):
        req = request(pipeline, image, "Describe " + "the picture " * index, tokens=10 + 9 * index)
        static = generate(engine, req, options, pipeline.decode)
        eager = generate(pipeline.engine, req, options, pipeline.decode)
        assert static.token_ids == eager.token_ids
        lengths.add(static.prompt_tokens)
        pointers.add(decoder.caches[Bucket(1, 256)].layers[0].keys.data_ptr())
    assert len(lengths) == 10
    assert list(decoder.caches) == [Bucket(1, 256)]
    assert len(pointers) == 1
    assert counter.frame_count == 1


def test_rows_joining_and_leaving_match_the_eager_batch(pipeline, image) -> None:
    counter = CompileCounter()
    static_engine = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, counted(counter)))
    reqs = [request(pipeline, image, p, t) for p, t in (("Hi", 12), ("Describe it all", 30))]
    results = []
    for engine in (pipeline.engine, static_engine):
        prefills = [engine.prefill(r.prefix_ids, r.suffix_ids, r.image, r.selection) for r in reqs]
        batch, positions = Batch(engine), [p.prompt_tokens for p in prefills]
        batch.join(prefills[0], reserve=8)
        first = batch.step([FED[0]], positions[:1])  # one row, then a second joins
        batch.join(prefills[1], reserve=8)
        both = batch.step(FED[1:3], [positions[0] + 1, positions[1]])
        batch.keep([1])  # the first leaves
        last = batch.step([FED[3]], [positions[1] + 1])
        results.append(torch.cat([first, both, last]))
    assert_same_choices(*results)
    assert len(static_engine.static.caches) == 2  # one row, then two rows: two buckets
    assert counter.frame_count == 2


def test_a_step_that_does_not_compile_says_so_once_and_decodes_eagerly(
    pipeline, image, capsys
) -> None:
    def broken(_step):
        def fail(*_args):
            raise RuntimeError("fake: no meta kernel for bitsandbytes::gemv_4bit\nmore")

        return fail

    decoder = StaticDecoder(pipeline.model, broken, "bitsandbytes 4bit")
    engine = Engine(pipeline.parts, static=decoder)
    req = request(pipeline, image, "Describe the picture.", tokens=20)
    options = SamplingOptions(max_new_tokens=5)
    static = generate(engine, req, options, pipeline.decode)
    eager = generate(pipeline.engine, req, options, pipeline.decode)
    assert static.token_ids == eager.token_ids
    lines = [line for line in capsys.readouterr().err.splitlines() if "decoding eagerly" in line]
    assert lines == [
        "[edge-hired] bitsandbytes 4bit does not compile here (RuntimeError: fake: no meta "
        "kernel for bitsandbytes::gemv_4bit); decoding eagerly"
    ]
    assert decoder.step.record.fallback is not None
    assert static.compile_s == 0.0


@pytest.mark.slow
def test_inductor_compiled_steps_match_eager(pipeline, image, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold cache
    engine = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, torch_compiler("cpu")))
    req = request(pipeline, image, "Describe the picture.", tokens=40)
    assert_same_choices(fed_logits(pipeline.engine, req), fed_logits(engine, req))
    assert engine.static.step.record.take_seconds() > 0  # the first step compiled
    options = SamplingOptions(max_new_tokens=8)
    static = generate(engine, req, options, pipeline.decode)
    assert static.token_ids == generate(pipeline.engine, req, options, pipeline.decode).token_ids
    assert static.compile_s == 0.0  # the same bucket: compiled before, not again
    assert engine.static.step.record.fallback is None


@pytest.mark.slow
def test_run_compile_on_gives_the_eager_answer_and_reports_the_compile(
    tiny_llava_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    answers = {}
    for mode in ("off", "on"):
        argv = ["run", "--model", str(tiny_llava_dir), "--device", "cpu", "--dtype", "fp32"]
        assert main([*argv, "--compile", mode, "--max-new-tokens", "6", "--json"]) == 0
        out, err = capsys.readouterr()
        answers[mode] = json.loads(out.strip().splitlines()[-1])
        assert (ANNOUNCEMENT in err) is (mode == "on")
    assert answers["on"]["token_ids"] == answers["off"]["token_ids"]
    assert answers["off"]["compile_s"] == 0.0 < answers["on"]["compile_s"]


@pytest.mark.parametrize(("flag", "wired"), [("on", True), ("off", False), ("auto", False)])
def test_the_target_carries_the_choice_to_the_engines(tiny_llava_dir: Path, flag, wired) -> None:
    """On a CPU auto decodes eagerly; on and off are obeyed, by `run`'s and `serve`'s engines."""
    flags = TargetFlags(device="cpu", compile=flag)
    target = resolve_target(flags, ModelSource("model", str(tiny_llava_dir)))
    assert target.compile_decode is wired
    pipeline = load_target(target)
    assert (pipeline.static_decoder is not None) is wired
    assert (pipeline.engine.static is not None) is wired
    assert pipeline.engine_for(None).static is pipeline.static_decoder
