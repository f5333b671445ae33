"""Static-cache decode for the Qwen-VL families: each row's M-RoPE positions ride in the step.

Qwen3-VL and Qwen2.5-VL decode at [4, B, 1] positions (sequence index for the mask, then
t / h / w = index + the row's rope delta). The static step carries them at a fixed shape per
bucket, so a compiled step gives the eager engine's tokens, at 100% and at 20% (HiRED), alone
and with rows of different images (different rope deltas) joining and leaving. Fast tests trace
with dynamo's `CompileCounter`; the `slow` ones compile with inductor. Logits are compared at a
tolerance far below the eager run's gap between its best two tokens (asserted), and the tokens
fed are the eager greedy ones, so equal choices mean equal greedy answers by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from edge_hired.cli.main import main
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.compile_policy import ANNOUNCEMENT, torch_compiler
from edge_hired.runtime.engine import Batch, Engine
from edge_hired.runtime.generation import GenerationRequest, generate
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.prefix import ImageInput, SelectionOptions
from edge_hired.runtime.sampling import SamplingOptions
from edge_hired.runtime.sources import load_target
from edge_hired.runtime.static_decode import StaticDecoder
from edge_hired.runtime.target import ModelSource, TargetFlags, resolve_target
from tests.integration.test_static_decode import assert_same_choices as same_choices
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

FAMILIES = ("tiny-qwen3-vl", "tiny-qwen2.5-vl")
SHAPES = {"square": (256, 256), "wide": (224, 448), "tall": (448, 224)}
NEW_TOKENS = 8
TOLERANCE = 1e-5  # static vs eager differ by ~1e-7 here (other shapes, same math)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-static")
    names = (*FAMILIES, "tiny-qwen3.5")
    return {name: build_checkpoint(name, root / name) for name in names}


@pytest.fixture(scope="module")
def pipelines(checkpoints: dict[str, Path]) -> dict[str, Pipeline]:
    return {f: Pipeline.from_pretrained(str(checkpoints[f]), "cpu", "float32") for f in FAMILIES}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test's compiles counted alone (dynamo's recompile limit is per code object)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def counted(counter: CompileCounter):
    """A compiler that traces with dynamo (whole graph, fixed shapes) and counts the traces."""
    return lambda step: torch.compile(step, backend=counter, fullgraph=True, dynamic=False)


def request(pipeline: Pipeline, shape: str, ratio: float) -> GenerationRequest:
    prefix, suffix = pipeline._split("What is this?")
    selection = SelectionOptions(strategy="hired", ratio=ratio)
    return GenerationRequest(prefix, suffix, ImageInput(noise(*SHAPES[shape])), selection)


def greedy(pipeline: Pipeline, req: GenerationRequest) -> list[int]:
    options = SamplingOptions(max_new_tokens=NEW_TOKENS)
    return generate(pipeline.engine, req, options, pipeline.decode).token_ids


def fed_logits(engine: Engine, req: GenerationRequest, tokens: list[int]) -> torch.Tensor:
    """Logits [steps, V] of one request fed `tokens` (its first logits, then one per token)."""
    prefill = engine.prefill(req.prefix_ids, req.suffix_ids, req.image, req.selection)
    batch, position = Batch(engine), prefill.prompt_tokens
    batch.join(prefill, reserve=len(tokens))
    steps = [prefill.logits[None]]
    for token in tokens[:-1]:
        steps.append(batch.step([token], [position]))
        position += 1
    return torch.cat(steps)


@pytest.mark.parametrize(("shape", "ratio"), [("square", 1.0), ("wide", 0.2)])
@pytest.mark.parametrize("family", FAMILIES)
def test_static_steps_give_the_eager_greedy_tokens(pipelines, family, shape, ratio) -> None:
    pipeline, counter = pipelines[family], CompileCounter()
    engine = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, counted(counter)))
    req = request(pipeline, shape, ratio)
    tokens = greedy(pipeline, req)
    eager = fed_logits(pipeline.engine, req, tokens)
    assert eager.argmax(-1).tolist() == tokens  # the fed tokens are the eager greedy answer
    same_choices(eager, fed_logits(engine, req, tokens), TOLERANCE)
    options = SamplingOptions(max_new_tokens=NEW_TOKENS)
    assert generate(engine, req, options, pipeline.decode).token_ids == tokens
    assert counter.frame_count == 1


def batch_logits(engine: Engine, reqs: list[GenerationRequest], fed: list[list[int]]) -> list:
    """Rows of different images join one by one, the first leaves; every step's logits."""
    prefills = [engine.prefill(r.prefix_ids, r.suffix_ids, r.image, r.selection) for r in reqs]
    batch, at = Batch(engine), [p.prompt_tokens for p in prefills]
    out = []
    for row, prefill in enumerate(prefills):  # join, then all rows step once
        batch.join(prefill, reserve=len(fed[0]))
        out.append(batch.step([fed[r][row] for r in range(row + 1)], at[: row + 1]))
        at[: row + 1] = [a + 1 for a in at[: row + 1]]
    batch.keep([1, 2])  # the first row leaves
    out.append(batch.step([fed[1][3], fed[2][3]], at[1:]))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_with_their_own_rope_deltas_join_and_leave_as_in_the_eager_batch(
    pipelines, family
) -> None:
    pipeline, counter = pipelines[family], CompileCounter()
    static = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, counted(counter)))
    reqs = [request(pipeline, s, r) for s, r in (("square", 1.0), ("wide", 0.2), ("tall", 1.0))]
    deltas = {pipeline.engine.prefill(r.prefix_ids, r.suffix_ids, r.image, r.selection)
              .positions.delta for r in reqs}  # fmt: skip
    assert len(deltas) == 3  # every row continues at its own rope delta
    fed = [greedy(pipeline, r) for r in reqs]
    eager, steps = batch_logits(pipeline.engine, reqs, fed), batch_logits(static, reqs, fed)
    for before, after in zip(eager, steps, strict=True):
        same_choices(before, after, TOLERANCE)
    assert sorted(b.rows for b in static.static.caches) == [1, 2, 4]  # 1, 2, 3 (4), then 2 rows
    assert counter.frame_count == 3


@pytest.mark.parametrize(("family", "wired"), [("tiny-qwen3-vl", True), ("tiny-qwen2.5-vl", True),
                                               ("tiny-qwen3.5", False)])  # fmt: skip
def test_the_qwen_vl_families_compile_and_qwen3_5_stays_eager(checkpoints, family, wired) -> None:
    target = resolve_target(TargetFlags(device="cpu", compile="on"), ModelSource(
        "model", str(checkpoints[family])))  # fmt: skip
    assert target.compile_decode is wired
    assert ("linear-attention" in " ".join(target.notes)) is not wired
    assert (load_target(target).engine.static is not None) is wired


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_inductor_compiled_steps_give_the_eager_greedy_tokens(
    pipelines, family, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold cache
    pipeline = pipelines[family]
    engine = Engine(pipeline.parts, static=StaticDecoder(pipeline.model, torch_compiler("cpu")))
    req = request(pipeline, "wide", 0.2)
    tokens = greedy(pipeline, req)
    same_choices(
        fed_logits(pipeline.engine, req, tokens), fed_logits(engine, req, tokens), TOLERANCE
    )
    assert engine.static.step.record.take_seconds() > 0  # the first step compiled
    assert engine.static.step.record.fallback is None


@pytest.mark.slow
def test_run_compile_on_a_qwen_model_gives_the_eager_answer(
    checkpoints, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    answers = {}
    for mode in ("off", "on"):
        argv = ["run", "--model", str(checkpoints["tiny-qwen2.5-vl"]), "--device", "cpu"]
        assert main([*argv, "--compile", mode, "--max-new-tokens", "6", "--json"]) == 0
        out, err = capsys.readouterr()
        answers[mode] = json.loads(out.strip().splitlines()[-1])
        assert (ANNOUNCEMENT in err) is (mode == "on")
    assert answers["on"]["token_ids"] == answers["off"]["token_ids"]
    assert answers["off"]["compile_s"] == 0.0 < answers["on"]["compile_s"]
