"""The plan counts what the target loads, and `serve --profile FILE.toml` plans with that file.

An fp16 bundle on a CPU computes in bf16 or fp32 (`device.compute_dtype`): its LLM is held in
that dtype, so the plan must count it so, before loading (from the target) and after (from
what the loader recorded), not the manifest's fp16 bytes.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.facts.run_facts import PlanSource, pipeline_run_facts, target_run_facts
from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
from edge_hired.runtime.model_source import ModelSource
from edge_hired.runtime.target import TargetFlags, resolve_target
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.server import build_planner
from tests.helpers import textured_image
from tests.integration.serve_support import data_url, process_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HW = (336, 336)


@pytest.fixture(scope="module")
def fp16_bundle(tiny_next_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-next-fp16"
    options = ExportOptions(quantization="none", dtype="fp16", measure_memory=False)
    export_bundle(str(tiny_next_dir), out, options)
    return out


def loaded_llm_bytes(pipeline) -> int:
    return sum(p.numel() * p.element_size() for p in pipeline.parts.llm.parameters())


@pytest.mark.parametrize("dtype", [None, "fp32"])
def test_the_plan_of_an_fp16_bundle_on_a_cpu_counts_the_loaded_weights(
    fp16_bundle: Path, dtype: str | None
) -> None:
    pipeline = load_bundle_pipeline(fp16_bundle, BundleLoadOptions(device="cpu", dtype=dtype))
    loaded = str(pipeline.parts.llm.get_input_embeddings().weight.dtype).removeprefix("torch.")
    assert loaded in ("float32", "bfloat16")  # never the exported fp16 on a CPU
    after = pipeline_run_facts(pipeline, PlanSource("bundle", str(fp16_bundle)), HW, "What?")
    assert after.inputs.llm_weight_bytes == loaded_llm_bytes(pipeline)
    assert (after.inputs.compute_dtype, after.inputs.kv_dtype) == (loaded, loaded)
    flags = TargetFlags(device="cpu", dtype=dtype)
    target = resolve_target(flags, ModelSource("bundle", str(fp16_bundle)))
    before = target_run_facts(target, HW, "What?")
    assert before.inputs.llm_weight_bytes == loaded_llm_bytes(pipeline)  # exact, from headers
    assert before.inputs.kv_dtype == loaded


def mybox_profile(folder: Path, total_gib: float) -> Path:
    """A calibrated-style profile file outside the profiles folder: cpu.toml, fixed memory."""
    text = (REPO / "profiles" / "cpu.toml").read_text()
    text = text.replace('name = "cpu"', 'name = "mybox"')
    text = text.replace('source = "meminfo"', f"total_gib = {total_gib}")
    path = folder / "mybox.toml"
    path.write_text(text)
    return path


def test_build_planner_uses_the_profile_object_of_a_file(tiny_next_dir: Path, tmp_path) -> None:
    path = mybox_profile(tmp_path, 64.0)
    planner = build_planner(ServeConfig(model=str(tiny_next_dir), device="cpu", profile=str(path)))
    assert planner is not None and planner.profile.name == "mybox"
    assert planner.profile.path == path


def test_serve_with_a_profile_file_starts_and_plans_with_it(tiny_next_dir: Path, tmp_path) -> None:
    """A 0.45 GiB box: the plan caps the request (it would keep every token on this machine)."""
    path = mybox_profile(tmp_path, 0.45)
    flags = ("--model", str(tiny_next_dir), "--model-name", "tiny", "--device", "cpu")
    content = [
        {"type": "image_url", "image_url": {"url": data_url(textured_image(400, 800))}},
        {"type": "text", "text": "What?"},
    ]
    payload = {"model": "tiny", "messages": [{"role": "user", "content": content}]}
    with process_server(*flags, "--profile", str(path), "--max-tokens", "2") as (base, _proc):
        response = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    hired = response.json()["hired"]
    assert hired["capped_by_memory"] is True
    assert 0 < hired["visual_tokens_kept"] < hired["visual_tokens_total"]


@pytest.mark.parametrize(
    ("providers", "held"), [(("cuda", "cpu"), True), (("tensorrt",), True), (("cpu",), False)]
)
def test_a_bundle_on_an_ort_gpu_provider_plans_its_arena_as_held(
    fp16_bundle: Path, providers: tuple[str, ...], held: bool
) -> None:
    """The planner's held-arena arithmetic reaches run's plan: from the target before loading."""
    from edge_hired.facts.run_facts import run_request

    target = resolve_target(
        TargetFlags(device="cpu", providers=providers), ModelSource("bundle", str(fp16_bundle))
    )
    facts = target_run_facts(target, HW, "What?")
    assert facts.encoder_held is held
    assert run_request(facts, 8).encoder_held is held


def test_an_in_process_or_cpu_session_encoder_is_never_planned_as_held(
    fp16_bundle: Path, tiny_next_dir: Path
) -> None:
    """After loading: the provider that really leads decides (CPU session, torch encoder)."""
    bundle = load_bundle_pipeline(fp16_bundle, BundleLoadOptions(device="cpu", providers=("cpu",)))
    assert bundle.encoder_provider == "CPUExecutionProvider"
    source = PlanSource("bundle", str(fp16_bundle))
    assert pipeline_run_facts(bundle, source, HW, "What?").encoder_held is False
    target = resolve_target(TargetFlags(device="cpu"), ModelSource("model", str(tiny_next_dir)))
    assert target_run_facts(target, HW, "What?").encoder_held is False
