"""The memory planner: KV bytes against a real transformers cache, weight bytes against real
models and bitsandbytes' formats, and the budget arithmetic (largest fit, deficits, reasons)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, LlavaNextConfig

from edge_hired.bundle.manifest import Manifest
from edge_hired.errors import InvalidArgumentError
from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.models.reference_configs import llava_v16_vicuna_7b_config
from edge_hired.models.tiny import make_config
from edge_hired.planner.arithmetic import (
    MemoryCap,
    PlanError,
    plan_budget,
    predicted_peak_bytes,
    required_bytes,
)
from edge_hired.planner.inputs import PlanInputs, PlanRequest, parameter_bytes
from edge_hired.planner.shapes import LlmShape, VisionShape, max_geometry
from edge_hired.profiles import load_all, load_profile
from edge_hired.units import GIB, MIB
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


@pytest.fixture(scope="module")
def configs() -> dict[str, LlavaNextConfig]:
    return {
        "tiny": make_config("tiny-llava-next"),
        "mid": make_config("mid-llava-next"),
        "7b": llava_v16_vicuna_7b_config(),
    }


# --- KV bytes per token == a real DynamicCache after prefill ----------------------------------


def cache_bytes(cache) -> int:
    """Bytes of every key and value tensor a transformers cache holds."""
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("preset", ["tiny", "mid"])
def test_kv_bytes_per_token_match_a_real_cache(configs, preset: str, dtype: str) -> None:
    """The cache's size depends on layers, KV heads and head dim only, so the mid preset's
    attention geometry (16 layers, 8 KV heads, head dim 128) runs with its MLP and vocabulary
    shrunk to keep the test fast."""
    config = configs[preset]
    predicted = inputs_from_config(config, "none", dtype).kv_bytes_per_token
    text = config.text_config.to_dict() | {"intermediate_size": 16, "vocab_size": 64}
    with torch.device("meta"):  # uninitialised weights: the cache's size does not depend on them
        model = AutoModelForCausalLM.from_config(
            type(config.text_config)(**text), dtype=getattr(torch, dtype)
        )
    model = model.to_empty(device="cpu").eval()
    tokens = 37
    with torch.inference_mode():
        out = model(input_ids=torch.arange(tokens)[None] % 64, use_cache=True)
    assert cache_bytes(out.past_key_values) == predicted * tokens


def test_vicuna_7b_kv_is_half_a_mebibyte_per_token_in_fp16(configs) -> None:
    assert inputs_from_config(configs["7b"], "4bit", "float16").kv_bytes_per_token == 512 * 1024


# --- weight bytes -----------------------------------------------------------------------------


def test_weights_of_the_tiny_model_equal_a_real_instance(configs) -> None:
    config = configs["tiny"]
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    llm = {id(p) for p in model.model.language_model.parameters()} | {
        id(p) for p in model.lm_head.parameters()
    }
    real = {"llm": 0, "encoder": 0}
    for p in model.parameters():
        real["llm" if id(p) in llm else "encoder"] += p.numel() * p.element_size()
    inputs = inputs_from_config(config, "none", "float32")
    assert (inputs.llm_weight_bytes, inputs.encoder_weight_bytes) == (real["llm"], real["encoder"])


def test_vicuna_7b_weights_fp16_4bit_8bit(configs) -> None:
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # q, k, v, o, gate, up, down
    rows = 32 * (4 * 4096 + 2 * 11008 + 4096)  # output rows of those Linear layers
    plain = (2 * 32064 * 4096 + 65 * 4096) * 2  # embeddings, lm_head, 65 RMSNorms in fp16
    fp16 = inputs_from_config(configs["7b"], "none", "float16")
    nf4 = inputs_from_config(configs["7b"], "4bit", "float16")
    int8 = inputs_from_config(configs["7b"], "8bit", "float16")
    assert fp16.llm_weight_bytes + fp16.encoder_weight_bytes == 7_063_431_168 * 2
    assert nf4.llm_weight_bytes == linear // 2 + linear // 64 * 4 + plain
    assert int8.llm_weight_bytes == linear + rows * 4 + plain
    assert nf4.encoder_weight_bytes == int8.encoder_weight_bytes == fp16.encoder_weight_bytes
    assert nf4.largest_quantized_linear == 4096 * 11008 and fp16.largest_quantized_linear == 0


def test_parameter_bytes_of_the_quantised_formats() -> None:
    assert parameter_bytes((11008, 4096), "4bit", 2) == 11008 * 4096 // 2 + 11008 * 4096 // 64 * 4
    assert parameter_bytes((11008, 4096), "8bit", 2) == 11008 * 4096 + 11008 * 4
    assert parameter_bytes((10, 3), "4bit", 2) == 15 + 4  # half-bytes and one absmax, rounded up
    assert parameter_bytes((10, 3), "none", 4) == 120


def test_unknown_quantization_and_dtype_are_refused(configs) -> None:
    with pytest.raises(InvalidArgumentError, match="quantization: expected none, 8bit or 4bit"):
        inputs_from_config(configs["tiny"], "3bit", "float16")
    with pytest.raises(InvalidArgumentError, match="dtype: expected float32, float16 or bfloat16"):
        inputs_from_config(configs["tiny"], "none", "float8")


def test_largest_layouts() -> None:
    next_shape = VisionShape(
        23, 1024, 4096, 16, 336, 14, "llava_next", tuple(tuple(p) for p in PINPOINTS)
    )
    assert max_geometry(next_shape) == (5, 2880)
    assert max_geometry(VisionShape(23, 1024, 4096, 16, 336, 14, "llava")) == (1, 576)


# --- the budget arithmetic (pure, synthetic model facts) --------------------------------------

PINS = tuple(tuple(p) for p in PINPOINTS)
SYNTH = PlanInputs(
    source="synthetic",
    llm=LlmShape(16, 1024, 2816, 8, 4, 128, 32000),
    vision=VisionShape(23, 1024, 4096, 16, 336, 14, "llava_next", PINS),
    quantization="none",
    compute_dtype="float16",
    kv_dtype="float16",
    llm_weight_bytes=2 * GIB,
    encoder_weight_bytes=600 * MIB,
    llm_matmul_params=10**9,
    vision_matmul_params=3 * 10**8,
    vision_dtype="float16",
)
REQUEST = PlanRequest(prompt_tokens=40, max_new_tokens=32)


def required(profile, request, n: int) -> int:
    return required_bytes(SYNTH, profile, request, n)


#: SYNTH by hand: KV 2 (K, V) x 16 layers x 4 KV heads x 128 head dim x 2 B (fp16) per token, and
#: the CLIP live set of a partition, 577 tokens x (3 x 4096 + 7.5 x 1024) elements x 2 B (fp16).
SYNTH_KV_PER_TOKEN = 2 * 16 * 4 * 128 * 2  # 32 KiB
SYNTH_ENCODER_LIVE = 577 * (3 * 4096 + 7.5 * 1024) * 2  # per partition
#: prefill live set per token: (3 x 2816 + 5.5 x 1024 + 2 x 1024 for the fp32 RMSNorm) x 2 B.
SYNTH_PREFILL_LIVE = (3 * 2816 + 5.5 * 1024 + 2 * 1024) * 2
#: the assumed 1920x1080 image: 13 B per pixel, plus 4 float32 copies of 5 x 3 x 336 x 336.
SYNTH_IMAGE = 1080 * 1920 * 13 + 4 * 5 * 3 * 336 * 336 * 4


def test_a_generous_cap_keeps_every_token() -> None:
    """Every line on the AGX Orin 64GB (cuda allocator: x1.25 encoder, x1.5 prefill, no spread),
    worked out from SYNTH and the profile by hand."""
    profile = load_profile("agx-orin-64gb")
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "test"))
    assert plan.budget_tokens == plan.visual_tokens_available == 2880
    expected = {
        "runtime": int(0.35 * GIB),  # runtime_gib = 0.35
        "CUDA context": int(0.27 * GIB),  # cuda_context_gib = 0.27 (lazy loading, pytorch#86509)
        "LLM weights": 2 * GIB,
        "encoder weights": 600 * MIB,
        "image": SYNTH_IMAGE,
        "encoder activations": int(5 * SYNTH_ENCODER_LIVE * 1.25),
        # 2880 visual + 40 prompt + 32 new tokens, one layer's KV copied once more in decode
        "KV cache": int(SYNTH_KV_PER_TOKEN * (1 + 1 / 16) * (2880 + 40 + 32)),
        "prefill activations": int(SYNTH_PREFILL_LIVE * 1.5 * (2880 + 40)),
    }
    # the encoder phase (144.0 MB) is freed before the LLM phase (KV 102.8 + prefill 141.3 MB)
    expected["phases apart"] = -expected["encoder activations"]
    lines = {line.name: line.bytes for line in plan.lines}
    assert list(lines) == [*expected, "margin"]
    assert {name: lines[name] for name in expected} == expected
    peak = sum(expected.values())
    assert plan.peak_bytes == peak == 3_740_459_130
    assert lines["margin"] == int(0.05 * peak)  # above the 64 MiB floor, no allocator spread
    assert plan.required_bytes == peak + int(0.05 * peak) <= 40 * GIB
    assert any(r.startswith("budget: all 2880 visual tokens fit") for r in plan.reasons)


def test_the_margin_is_a_share_of_the_peak_plus_the_allocator_spread() -> None:
    """On the CPU the prediction takes x2.0 (prefill) and x1.4 (encoder) of the live set; the
    margin adds 5% of the peak and the spread up to the worst factors seen, x3.1 and x1.5. The
    peak holds the larger phase only: the LLM's (203.7 MB) over the encoder's (161.3 MB), and
    the spread is the LLM phase's at x3.1 (276.1 MB) over its typical figure."""
    profile, request = load_profile("cpu"), PlanRequest(prompt_tokens=40, max_new_tokens=32)
    peak = (
        360 * MIB  # the measured CPU runtime (the cpu profile sets no runtime_gib)
        + 2 * GIB
        + 600 * MIB
        + SYNTH_IMAGE
        # int(5 * SYNTH_ENCODER_LIVE * 1.4): freed before the prefill, smaller than the LLM phase
        + int(SYNTH_KV_PER_TOKEN * (1 + 1 / 16) * (2000 + 40 + 32))
        + int(SYNTH_PREFILL_LIVE * 2.0 * (2000 + 40))
    )
    assert predicted_peak_bytes(SYNTH, profile, request, 2000) == peak == 3_411_911_680
    spread = SYNTH_PREFILL_LIVE * 2040 * 1.1
    assert required_bytes(SYNTH, profile, request, 2000) == pytest.approx(
        peak + 0.05 * peak + spread, abs=2
    )


def test_a_tight_cap_keeps_the_largest_count_that_fits() -> None:
    profile = load_profile("orin-nx-8gb")
    cap = required(profile, REQUEST, 2000) + 1000
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(cap, "test"))
    assert plan.budget_tokens == 2000
    assert required(profile, REQUEST, 2000) <= cap < required(profile, REQUEST, 2001)
    assert "budget: 2000 of 2880 visual tokens fit under the cap" in plan.reasons


def test_while_the_encoder_phase_is_larger_more_tokens_cost_nothing() -> None:
    """On the cuda allocator the encoder phase is 5 x SYNTH_ENCODER_LIVE x 1.25 = 144,019,200 B;
    the LLM phase is 34,816 B (KV, x 17/16) x (n + 72) + 48,384 B (prefill x 1.5) x (n + 40),
    which passes it above n = (144,019,200 - 2,506,752 - 1,935,360) / 83,200 = 1677.6. A cap
    that admits 1000 tokens therefore admits every count up to 1677."""
    profile = load_profile("orin-nx-8gb")
    assert required(profile, REQUEST, 1) == required(profile, REQUEST, 1677)
    cap = required(profile, REQUEST, 1000)
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(cap, "test"))
    assert plan.budget_tokens == 1677


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=3 * GIB))
def test_more_memory_never_means_fewer_tokens(extra: int) -> None:
    profile = load_profile("rtx-4060-8gb")
    floor = required(profile, REQUEST, 1)
    small = plan_budget(SYNTH, profile, REQUEST, MemoryCap(floor + extra, "a"))
    large = plan_budget(SYNTH, profile, REQUEST, MemoryCap(floor + extra + 50 * MIB, "b"))
    assert 1 <= small.budget_tokens <= large.budget_tokens
    assert small.required_bytes <= floor + extra


def test_kv_dtype_of_the_profile_changes_the_cost_per_token() -> None:
    profile = load_profile("t4-16gb")
    half = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t"))
    full = plan_budget(SYNTH.with_kv_dtype("float32"), profile, REQUEST, MemoryCap(40 * GIB, "t"))
    kv = {
        plan.lines[[line.name for line in plan.lines].index("KV cache")].bytes
        for plan in (half, full)
    }
    assert max(kv) == 2 * min(kv)


def test_a_cap_below_the_weights_names_the_deficit() -> None:
    profile = load_profile("orin-nano-8gb")
    cap = MemoryCap(2 * GIB, "--memory-cap 2 GiB")
    with pytest.raises(PlanError) as caught:
        plan_budget(SYNTH, profile, REQUEST, cap)
    need = required(profile, REQUEST, 1)
    assert caught.value.deficit_bytes == need - 2 * GIB
    assert str(caught.value).startswith(
        f"orin-nano-8gb: memory cap 2.00 GiB (--memory-cap 2 GiB) is {(need - 2 * GIB) / GIB:.2f}"
        " GiB short of the fixed costs plus one visual token and margin"
    )
    assert "largest: LLM weights 2.00, encoder weights 0.59" in str(caught.value)


def test_discrete_gpus_do_not_count_host_memory() -> None:
    names = [
        line.name
        for line in plan_budget(
            SYNTH, load_profile("t4-16gb"), REQUEST, MemoryCap(40 * GIB, "t")
        ).lines
    ]
    assert "runtime" not in names and "image" not in names and "CUDA context" in names


def test_estimates_follow_the_roofline() -> None:
    """Orin NX 16GB: 102 GB/s and 15 fp16 TFLOPS, at 70% and 50% of peak."""
    profile = load_profile("orin-nx-16gb")
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t"))
    # decode reads the weights and the KV of the mean context (2880 + 40 + 32 / 2 tokens)
    per_token = 2 * GIB + SYNTH_KV_PER_TOKEN * (2880 + 40 + 16)
    assert plan.estimates.decode_tokens_per_s == pytest.approx(71.4e9 / per_token)
    assert plan.estimates.decode_tokens_per_s == pytest.approx(31.8226, abs=1e-3)
    # TTFT is compute-bound: encoder 5 x (2 x 3e8 x 577 + 4 x 23 x 577^2 x 1024) FLOPs, prefill
    # 2 x 1e9 x 2920 + 2 x 16 x 2920^2 x 8 x 128, over 7.5 TFLOP/s
    flops = 5 * (2 * 3e8 * 577 + 4 * 23 * 577**2 * 1024) + 2e9 * 2920 + 32 * 2920**2 * 1024
    assert plan.estimates.ttft_s == pytest.approx(flops / 7.5e12)
    assert plan.estimates.ttft_s > (2 * GIB + 600 * MIB) / 71.4e9  # not bandwidth-bound here
    assert "estimates, not measurements" in plan.estimates.note


def test_request_counts_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="prompt_tokens: expected an integer >= 0"):
        plan_budget(
            SYNTH, load_profile("cpu"), PlanRequest(prompt_tokens=-1), MemoryCap(40 * GIB, "t")
        )


# --- from a bundle manifest -------------------------------------------------------------------


def manifest(measured: int) -> Manifest:
    vision = dict(
        family="llava_next",
        crop_size=336,
        patch_size=14,
        tokens_per_partition=576,
        num_heads=16,
        hidden_size=1024,
        vision_feature_layer=-2,
        layers_in_graph=23,
        l_init=0,
        l_final=22,
        pinpoints=PINPOINTS,
        image_token_id=32000,
        encoder_bytes=600 * MIB,
        activation_bytes_per_partition=measured,
        dtype="float16",
    )
    llm = dict(
        architecture="LlamaForCausalLM",
        num_layers=32,
        num_kv_heads=32,
        head_dim=128,
        hidden_size=4096,
        intermediate_size=11008,
        vocab_size=32064,
        max_position_embeddings=4096,
        compute_dtype="float16",
        quantization="4bit",
        weight_bytes=3900 * MIB,
        projector_bytes=40 * MIB,
    )
    return Manifest.from_dict(
        {
            "schema_version": 1,
            "source": {"model_id": "llava-7b"},
            "versions": {},
            "vision": vision,
            "llm": llm,
            "parity": {},
        }
    )


def test_manifest_facts_are_used_as_recorded() -> None:
    inputs = PlanInputs.from_manifest(manifest(measured=30 * MIB))
    assert inputs.llm_weight_bytes == 3900 * MIB and inputs.encoder_weight_bytes == 640 * MIB
    assert inputs.kv_bytes_per_token == 512 * 1024 and inputs.source == "bundle llava-7b"
    plan = plan_budget(inputs, load_profile("agx-orin-32gb"), REQUEST, MemoryCap(20 * GIB, "t"))
    encoder = next(line for line in plan.lines if line.name == "encoder activations")
    assert encoder.bytes == 5 * 30 * MIB and encoder.note.startswith("measured at export")
    assert "encoder activations: modelled (no measured figure recorded)" not in plan.reasons


def test_manifest_without_a_measurement_is_modelled_and_says_so() -> None:
    inputs = PlanInputs.from_manifest(manifest(measured=0), kv_dtype="float32")
    assert inputs.kv_bytes_per_token == 1024 * 1024
    plan = plan_budget(inputs, load_profile("agx-orin-32gb"), REQUEST, MemoryCap(20 * GIB, "t"))
    assert "encoder activations: modelled (no measured figure recorded)" in plan.reasons


# --- the 7B table: every profile, 4-bit and 8-bit, from the configuration alone ---------------


def test_every_profile_plans_the_config_only_7b(configs) -> None:
    from edge_hired.facts.memory_cap import memory_cap

    outcomes = {}
    for profile in load_all():
        for quantization in ("4bit", "8bit"):
            inputs = inputs_from_config(
                configs["7b"],
                quantization,
                profile.runtime.compute_dtype,
                profile.runtime.kv_cache_dtype,
            )
            try:
                plan = plan_budget(inputs, profile, PlanRequest(), memory_cap(profile))
                outcomes[profile.name, quantization] = plan.budget_tokens
            except PlanError as error:
                assert error.deficit_bytes > 0
                outcomes[profile.name, quantization] = 0
    for big in ("agx-orin-64gb", "agx-thor-128gb", "p40-24gb", "t4-16gb", "orin-nx-16gb"):
        assert outcomes[big, "4bit"] == outcomes[big, "8bit"] == 2880
    assert outcomes["orin-nano-4gb", "4bit"] == 0
    assert 0 < outcomes["rtx-4060-8gb", "4bit"] < 2880  # the one partial fit


def test_the_documented_table_matches_the_script(configs) -> None:
    spec = importlib.util.spec_from_file_location("plan_table", ROOT / "scripts" / "plan_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = [row for row in module.table().splitlines() if not row.startswith("| cpu ")]
    documented = (ROOT / "docs" / "profiles-table.md").read_text().splitlines()
    documented = [row for row in documented if row.startswith("|") and not row.startswith("| cpu ")]
    assert documented == generated, "regenerate: .venv/bin/python scripts/plan_table.py --write"


# --- the plan command on a config-only 7B -----------------------------------------------------


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory, configs) -> Path:
    path = tmp_path_factory.mktemp("llava-7b-config")
    configs["7b"].save_pretrained(path)
    return path


def test_plan_command_json(config_dir, capsys) -> None:
    argv = [
        "plan",
        "--model",
        str(config_dir),
        "--profile",
        "orin-nx-16gb",
        "--json",
        "--prompt-tokens",
        "100",
        "--max-new-tokens",
        "20",
    ]
    assert run_cli(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["budget_tokens"] == 2880 and plan["budget_share"] == 1.0
    assert plan["request"]["prompt_tokens"] == 100 and plan["source"].endswith("8bit, float16)")


def test_plan_command_table(config_dir, capsys) -> None:
    assert run_cli(["plan", "--model", str(config_dir), "--profile", "rtx-4060-8gb"]) == 0
    out = capsys.readouterr().out
    assert "visual-token budget  " in out and "predicted TTFT" in out and "estimates, not" in out
    assert "of 2880 (" in out and "  KV cache " in out


def test_plan_command_cap_below_the_weights_exits_2(config_dir, capsys) -> None:
    argv = ["plan", "--model", str(config_dir), "--profile", "t4-16gb", "--memory-cap", "3"]
    assert run_cli(argv) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    error = lines[-1]  # one line, after the list of what would fit
    assert error.startswith(
        "edge-hired: error: t4-16gb: memory cap 3.00 GiB (--memory-cap 3 GiB) is "
    )
    assert "GiB short of the fixed costs" in error
    assert lines[0] == "what would fit (each change alone):"
    assert all(line.startswith("- ") for line in lines[1:-1])


# --- run --profile / --memory-cap -------------------------------------------------------------


def run_args(argv: list[str]):
    """Parse the plan flags every runtime command shares."""
    import argparse

    from edge_hired.cli.runtime_flags import add_plan_args

    parser = argparse.ArgumentParser()
    add_plan_args(parser)
    return parser.parse_args(argv)


def synth_target(memory_cap_gib: float | None = None):
    """A resolved target on the CPU, as `run --memory-cap` builds it (no model is read)."""
    import torch

    from edge_hired.runtime.model_source import ModelSource
    from edge_hired.runtime.target import Target

    return Target(
        source=ModelSource("model", "synthetic"),
        device=torch.device("cpu"),
        compute_dtype="float16",
        kv_dtype="float16",
        quantization="none",
        providers=None,
        verify=True,
        profile=load_profile("cpu") if memory_cap_gib is not None else None,
        memory_cap_gib=memory_cap_gib,
        ttft_target_s=None,
        headless=False,
        reasons=(),
    )


def synth_facts():
    from edge_hired.facts.run_facts import RunFacts

    return RunFacts(
        SYNTH,
        "cpu",
        (672, 672),
        partitions=5,
        visual_tokens=2880,
        newline_rows=48,
        prompt_tokens=40,
    )


def test_run_without_profile_flags_plans_nothing() -> None:
    from edge_hired.cli.run_planning import planned_cap
    from edge_hired.runtime.pipeline import SelectionOptions

    target = synth_target()
    assert not target.wants_plan
    assert planned_cap(target, (672, 672), "hi", SelectionOptions(), 32) is None


def test_run_memory_cap_gives_the_planned_token_cap(capsys) -> None:
    from edge_hired.cli.run_planning import plan_request
    from edge_hired.runtime.pipeline import SelectionOptions

    profile = load_profile("cpu")
    request = PlanRequest(
        prompt_tokens=40,
        max_new_tokens=32,
        partitions=5,
        visual_tokens=2880,
        image_hw=(672, 672),
        allocator="cpu",
        first_request=True,
    )
    cap_gib = (required_bytes(SYNTH, profile, request, 2000) + 1000) / GIB
    target = synth_target(cap_gib)
    plan = plan_request(target, synth_facts(), SelectionOptions(), 32)
    assert plan.budget_tokens == 2000
    err = capsys.readouterr().err
    assert "[edge-hired] plan (cpu): cap" in err and "keeping at most 2000 of 2880" in err
    rows = plan_request(target, synth_facts(), SelectionOptions(newline="rows"), 32)
    assert rows.budget_tokens == 2000 - 48  # newline tokens take their room


def test_run_profile_flag_values_are_checked() -> None:
    with pytest.raises(SystemExit):
        run_args(["--memory-cap", "-1"])
    with pytest.raises(SystemExit):
        run_args(["--memory-cap", "lots"])


def test_plan_command_on_a_bundle(tmp_path, capsys) -> None:
    (tmp_path / "manifest.json").write_text(manifest(measured=30 * MIB).to_json())
    assert run_cli(["plan", "--bundle", str(tmp_path), "--profile", "agx-orin-32gb", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["budget_tokens"] == 2880 and plan["source"] == "bundle llava-7b"
    argv = ["plan", "--bundle", str(tmp_path), "--profile", "agx-orin-32gb", "--quant", "4bit"]
    assert run_cli(argv) == 2
    assert "quantization with a bundle: expected none (fixed at export)" in capsys.readouterr().out
    assert run_cli(["plan", "--bundle", str(tmp_path / "none"), "--profile", "cpu"]) == 2


# --- typed phases, and ONNX Runtime's held GPU arena ------------------------------------------


def test_phases_are_summed_by_kind_not_by_display_name() -> None:
    """Renaming every line for display changes no sum: the phases are found by their kind."""
    from dataclasses import replace

    from edge_hired.planner.arithmetic import _phase_bytes
    from edge_hired.planner.costs import CostKind, Phase

    profile = load_profile("agx-orin-64gb")
    lines = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t")).lines
    kinds = {line.name: line.kind for line in lines}
    assert kinds["KV cache"] is CostKind.KV_CACHE and kinds["margin"] is CostKind.MARGIN
    assert [line.name for line in lines if line.kind.phase is Phase.LLM] == [
        "KV cache",
        "prefill activations",
    ]
    renamed = [replace(line, name=f"shown as {line.name.upper()}") for line in lines]
    encoder = int(5 * SYNTH_ENCODER_LIVE * 1.25)
    kv = int(SYNTH_KV_PER_TOKEN * (1 + 1 / 16) * (2880 + 40 + 32))
    prefill = int(SYNTH_PREFILL_LIVE * 1.5 * (2880 + 40))
    assert _phase_bytes(renamed) == _phase_bytes(list(lines)) == (encoder, kv + prefill)


def test_a_plan_writes_each_lines_kind_as_its_value_in_json() -> None:
    plan = plan_budget(SYNTH, load_profile("t4-16gb"), REQUEST, MemoryCap(40 * GIB, "t"))
    written = json.loads(json.dumps(plan.to_dict()))
    assert [line["kind"] for line in written["lines"]] == [
        "cuda_context",
        "llm_weights",
        "encoder_weights",
        "encoder_activations",
        "kv_cache",
        "prefill_activations",
        "overlap",
        "margin",
    ]


HELD = PlanRequest(prompt_tokens=40, max_new_tokens=32, encoder_held=True)


def test_a_held_onnx_runtime_arena_adds_to_the_llm_phase() -> None:
    """The AGX Orin 64GB example of `test_a_generous_cap_keeps_every_token`, with the encoder in
    ONNX Runtime on CUDA: its arena (5 partitions x SYNTH_ENCODER_LIVE x 1.25, the cuda worst
    factor = 144,019,200 B) is held, so nothing is taken back and the peak is the sum."""
    profile = load_profile("agx-orin-64gb")
    plan = plan_budget(SYNTH, profile, HELD, MemoryCap(40 * GIB, "test"))
    lines = {line.name: line.bytes for line in plan.lines}
    expected = {
        "runtime": int(0.35 * GIB),
        "CUDA context": int(0.27 * GIB),
        "LLM weights": 2 * GIB,
        "encoder weights": 600 * MIB,
        "image": SYNTH_IMAGE,
        "encoder arena": 144_019_200,
        "KV cache": int(SYNTH_KV_PER_TOKEN * (1 + 1 / 16) * (2880 + 40 + 32)),
        "prefill activations": int(SYNTH_PREFILL_LIVE * 1.5 * (2880 + 40)),
    }
    assert list(lines) == [*expected, "margin"]
    assert {name: lines[name] for name in expected} == expected
    freed = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "test"))
    assert freed.peak_bytes == 3_740_459_130  # max(encoder, LLM phase): the encoder is freed
    assert plan.peak_bytes == sum(expected.values()) == 3_740_459_130 + 144_019_200


def test_the_held_arena_is_sized_for_the_largest_layout_whatever_the_image() -> None:
    """A 336x336 image (3 partitions) after a 672x672 one (5) leaves the arena at 5 partitions."""
    small = PlanRequest(prompt_tokens=40, max_new_tokens=32, partitions=3, visual_tokens=1176)
    profile = load_profile("orin-nx-16gb")
    freed = {
        line.name: line.bytes
        for line in plan_budget(SYNTH, profile, small, MemoryCap(GIB * 9, "t")).lines
    }
    held_request = PlanRequest(**{**small.__dict__, "encoder_held": True})
    held = {
        line.name: line.bytes
        for line in plan_budget(SYNTH, profile, held_request, MemoryCap(9 * GIB, "t")).lines
    }
    assert freed["encoder activations"] == int(3 * SYNTH_ENCODER_LIVE * 1.25)
    assert held["encoder arena"] == int(5 * SYNTH_ENCODER_LIVE * 1.25)


@pytest.mark.parametrize("visual", [1, 1000, 1677, 1678, 2880])
def test_held_phases_add_where_freed_ones_take_the_larger(visual: int) -> None:
    """max(encoder, LLM) + min(encoder, LLM) = encoder + LLM, at every count: below 1677 tokens
    the encoder phase is the larger (see `test_while_the_encoder_phase_is_larger...`)."""
    profile = load_profile("orin-nx-8gb")
    encoder = 144_019_200
    llm = int(SYNTH_KV_PER_TOKEN * (1 + 1 / 16) * (visual + 72)) + int(
        SYNTH_PREFILL_LIVE * 1.5 * (visual + 40)
    )
    freed = predicted_peak_bytes(SYNTH, profile, REQUEST, visual)
    held = predicted_peak_bytes(SYNTH, profile, HELD, visual)
    assert held - freed == min(encoder, llm)


def test_a_held_arena_lowers_the_budget_under_the_same_cap() -> None:
    """Under the cap that admits 2500 tokens with the encoder freed, a held arena pays for both
    phases: 144,019,200 B more at 83,200 B per visual token (KV x 17/16 + prefill x 1.5) is
    1731 tokens fewer, to within the 5% margin's rounding."""
    profile = load_profile("orin-nx-8gb")
    cap = required(profile, REQUEST, 2500)
    assert plan_budget(SYNTH, profile, REQUEST, MemoryCap(cap, "t")).budget_tokens == 2500
    held = plan_budget(SYNTH, profile, HELD, MemoryCap(cap, "t")).budget_tokens
    assert required_bytes(SYNTH, profile, HELD, held) <= cap
    assert required_bytes(SYNTH, profile, HELD, held + 1) > cap
    assert 2500 - held in (1731, 1732)


def test_the_arena_limit_is_the_encoders_weights_plus_the_held_arena() -> None:
    from edge_hired.planner.costs import holds_arena, ort_gpu_mem_limit

    inputs = PlanInputs.from_manifest(manifest(measured=30 * MIB))
    assert ort_gpu_mem_limit(inputs) == 640 * MIB + 5 * 30 * MIB  # measured at export
    modelled = PlanInputs.from_manifest(manifest(measured=0))
    live = 577 * (3 * 4096 + 7.5 * 1024) * 2  # fp16 encoder, 577 tokens per partition
    assert ort_gpu_mem_limit(modelled) == -(-(640 * MIB + int(5 * live * 1.25)) // MIB) * MIB
    assert holds_arena("CUDAExecutionProvider") and holds_arena("TensorrtExecutionProvider")
    assert not holds_arena("CPUExecutionProvider") and not holds_arena(None)
    assert not holds_arena("torch:cuda") and not holds_arena("torch:cpu")  # in-process encoder


class RecordingOrt:
    """ONNX Runtime as far as a session's creation: records the providers it is given."""

    def __init__(self) -> None:
        self.providers: list = []

    def InferenceSession(self, path, providers):
        self.providers = providers
        return self


def test_a_bundle_on_cuda_gives_onnx_runtime_the_planned_arena(tmp_path) -> None:
    from edge_hired.device.providers import ProviderChoice
    from edge_hired.runtime.bundle_runtime import (
        BundleLoadOptions,
        OnnxVisionEncoder,
        session_providers,
    )

    choice = ProviderChoice(("CUDAExecutionProvider", "CPUExecutionProvider"), "test")
    entries = session_providers(choice, manifest(measured=30 * MIB), BundleLoadOptions())
    ort = RecordingOrt()
    OnnxVisionEncoder(tmp_path / "encoder.onnx", entries, "float16", ort=ort)
    arena = {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(790 * MIB)}
    assert ort.providers == [("CUDAExecutionProvider", arena), "CPUExecutionProvider"]
