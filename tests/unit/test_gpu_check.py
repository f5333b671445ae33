"""scripts/gpu_check.py: exit 2 with one line without CUDA; rows that can fail, each tested on the
CPU with hand-made inputs (and the bitsandbytes comparison on real bundles, on the CPU)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA GPU visible to torch; this check needs an NVIDIA GPU"
    ]
    assert not (tmp_path / "x.json").exists()


def test_a_failing_section_becomes_a_row(check) -> None:
    rows: list[dict] = []

    def broken(found: list[dict]) -> None:
        raise RuntimeError("CUDA error: out of memory")

    check.section(rows, "7b", broken)
    assert rows[0]["ok"] is False and rows[0]["section"] == "7b"
    assert rows[0]["check"] == "7b (stopped)"
    assert rows[0]["detail"] == "RuntimeError: CUDA error: out of memory"
    assert "NO" in check.table(rows)


def test_rows_measured_before_an_exception_survive_it(check) -> None:
    rows: list[dict] = []

    def half_done(found: list[dict]) -> None:
        found.append({"check": "bitsandbytes 4bit", "ok": True, "detail": "measured"})
        raise RuntimeError("Error named symbol not found at line 90 in file ops.cu")

    check.section(rows, "bitsandbytes", half_done)
    assert [(row["check"], row["ok"]) for row in rows] == [
        ("bitsandbytes 4bit", True),
        ("bitsandbytes (stopped)", False),
    ]
    assert all(row["section"] == "bitsandbytes" for row in rows)


def test_tf32_is_off_inside_the_reference_block_and_restored_after(check) -> None:
    backends = SimpleNamespace(
        cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=True)),
        cudnn=SimpleNamespace(allow_tf32=True),
    )
    with pytest.raises(ValueError), check.NoTf32(backends):
        assert backends.cuda.matmul.allow_tf32 is False and backends.cudnn.allow_tf32 is False
        raise ValueError("reference failed")
    assert backends.cuda.matmul.allow_tf32 is True and backends.cudnn.allow_tf32 is True
    assert check.parity_entries(("CUDAExecutionProvider", "CPUExecutionProvider")) == [
        ("CUDAExecutionProvider", {"use_tf32": "0"}),
        "CPUExecutionProvider",
    ]


def test_the_encoder_row_holds_within_1e_3_and_fails_beyond(check) -> None:
    names = ("features", "cls_init", "cls_final", "keys_final")
    reference = SimpleNamespace(**{name: torch.zeros(2, 3) for name in names})
    close = SimpleNamespace(**{name: torch.full((2, 3), 2.0**-11) for name in names})
    tf32_like = SimpleNamespace(**{**close.__dict__, "features": torch.full((2, 3), 2.0**-9)})
    cuda = "CUDAExecutionProvider"
    assert check.encoder_row(cuda, "probed", close, reference)["ok"] is True
    far = check.encoder_row(cuda, "probed", tf32_like, reference)
    assert far["ok"] is False and far["max_abs_diff"]["features"] == 2.0**-9


def test_the_logits_row_compares_against_the_references_scale(check) -> None:
    want = torch.tensor([[1.0, -2.0, 0.5]])
    near = check.logits_row("4bit", want + torch.tensor([[0.0, 0.03125, 0.0]]), want, 2e-2)
    assert near["ok"] is True and near["relative_logit_error"] == 0.015625
    far = check.logits_row("8bit", want + 0.125, want, 5e-2)
    assert far["ok"] is False and far["relative_logit_error"] == 0.0625


@pytest.mark.integration
def test_quantized_bundles_match_their_dequantized_weights_on_the_cpu(check, tmp_path) -> None:
    """The same rows the GPU gets, run with bitsandbytes' CPU backend: 4-bit and 8-bit bundles'
    logits against the fp32 model rebuilt from their dequantized weights (3e-3 and 6e-3 of the
    logits' scale measured here, against tolerances of 2e-2 and 5e-2)."""
    from edge_hired.models.tiny import build_checkpoint

    tiny = build_checkpoint("tiny-llava-next", tmp_path / "tiny")
    rows: list[dict] = []
    check.quantized_rows(tiny, tmp_path, rows, device="cpu")
    assert [row["check"] for row in rows] == [
        "bitsandbytes 4bit export + run --bundle",
        "bitsandbytes 4bit logits on cpu vs CPU dequantized fp32",
        "bitsandbytes 8bit export + run --bundle",
        "bitsandbytes 8bit logits on cpu vs CPU dequantized fp32",
    ]
    assert all(row["ok"] for row in rows), [row["detail"] for row in rows]


def run_result(peak_mib: float | None) -> SimpleNamespace:
    """A 672x672 LLaVA-NeXT run at 100%: 2880 visual tokens, 48 newlines and an 18-token prompt."""
    return SimpleNamespace(
        llm_input_tokens=2880 + 48 + 18,
        visual_tokens_kept=2880,
        visual_tokens_total=2880,
        partition_budgets=[576] * 5,
        image_size=[672, 672],
        ttft_s=0.5,
        decode_tokens_per_s=40.0,
        device_peak_mib=peak_mib,
        timings_s={"prefill_to_first_token": 0.3},
    )


def test_the_7b_plan_is_made_for_the_prompt_the_run_had(check) -> None:
    """Every LLM position that is not a kept visual token is text: 66, not a fixed 64."""
    request = check.planned_request(run_result(None), new_tokens=32)
    assert (request.prompt_tokens, request.partitions, request.max_new_tokens) == (66, 5, 32)
    assert request.visual_tokens == 2880 and request.image_hw == (672, 672)
    assert request.allocator == "cuda"


def test_the_7b_peak_row_fails_when_the_peak_exceeds_the_plan(check) -> None:
    from edge_hired.facts.config_inputs import inputs_from_config
    from edge_hired.models.reference_configs import llava_v16_vicuna_7b_config
    from edge_hired.planner.arithmetic import required_bytes
    from edge_hired.profiles import load_profile

    config = llava_v16_vicuna_7b_config()
    inputs = inputs_from_config(config, "none", "float16")
    request = check.planned_request(run_result(None), 32)
    required = required_bytes(inputs, load_profile("t4-16gb"), request, 2880) / 2**20
    inside = check.plan_row("full", run_result(required - 1), config)
    assert inside["ok"] is True and inside["planned_prompt_tokens"] == 66
    assert check.plan_row("full", run_result(required + 1), config)["ok"] is False
    assert check.plan_row("full", run_result(None), config)["ok"] is False


def test_decode_is_a_share_of_the_bandwidth_roofline(check) -> None:
    """12 GiB of weights at 3 TiB/s: at most 256 tokens/s."""
    weights, bandwidth = 12 * 2**30, 3 * 2**40
    row = check.roofline_row(64.0, weights, bandwidth)
    assert row["roofline_tokens_per_s"] == 256.0 and row["roofline_share"] == 0.25
    assert row["ok"] is True and "25.0% of the roofline 256.0 tok/s" in row["detail"]
    assert check.roofline_row(300.0, weights, bandwidth)["ok"] is False  # a broken timer
    assert check.roofline_row(0.0, weights, bandwidth)["ok"] is False


def test_the_qwen_rows_hold_on_the_cpu_and_fail_on_a_different_answer(check, tmp_path) -> None:
    rows: list[dict] = []
    check.qwen_rows(tmp_path, rows, device="cpu")
    assert [row["ok"] for row in rows] == [True, True, True], [row["detail"] for row in rows]
    assert all("CPUExecutionProvider" in row["check"] for row in rows)
    run = SimpleNamespace(kept=[[0, 1]], token_ids=[5, 6], visual_tokens_kept=2)
    runs = {(name, where): run for name in ("full", "20%") for where in ("model", "bundle")}
    runs["20%", "bundle"] = SimpleNamespace(
        kept=[[0, 2]], token_ids=[5, 6], visual_tokens_kept=2, visual_tokens_total=10
    )
    runs["full", "bundle"] = SimpleNamespace(**{**vars(run), "visual_tokens_total": 10})
    assert check.qwen_row("x", "CPU", [5, 6], runs)["ok"] is False
