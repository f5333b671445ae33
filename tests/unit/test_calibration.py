"""Calibrated profiles: the fits, the [calibration] section written and read back, TTFT targets,
and what a plan that does not fit says would."""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest

from edge_hired.errors import BudgetError, InvalidArgumentError
from edge_hired.facts.calibration_fits import fit_timings, line_fit
from edge_hired.facts.profile_toml import render_profile, write_profile
from edge_hired.planner.arithmetic import MemoryCap, plan_budget
from edge_hired.planner.fits import evaluate, fit_polynomial
from edge_hired.planner.inputs import PlanRequest
from edge_hired.planner.measured import model_key
from edge_hired.planner.ttft import predict_ttft, ttft_fit
from edge_hired.profiles import ProfileError, load_profile, read_profile
from edge_hired.units import GIB, KIB, MIB
from tests.helpers import run_cli
from tests.unit.test_budget_planner import SYNTH, SYNTH_KV_PER_TOKEN

REQUEST = PlanRequest(prompt_tokens=40, max_new_tokens=32)


def test_the_quadratic_fit_recovers_known_coefficients_from_noisy_timings() -> None:
    rng = np.random.default_rng(0)
    n = np.array([14, 590, 1166, 1742, 2318, 2894] * 3, dtype=float)
    truth = (0.31, 2.2e-3, 4.0e-7)
    times = truth[0] + truth[1] * n + truth[2] * n**2 + rng.normal(0, 1e-3, n.size)
    a, b, c = fit_polynomial(n, times, 2)
    assert a == pytest.approx(0.31, abs=3e-3)
    assert b == pytest.approx(2.2e-3, rel=2e-3)
    assert c == pytest.approx(4.0e-7, rel=1e-2)
    assert evaluate((a, b, c), 1000) == pytest.approx(0.31 + 2.2 + 0.4, rel=1e-3)


def test_a_fit_needs_more_distinct_lengths_than_its_degree() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 3 distinct lengths for degree 2"):
        fit_polynomial([10, 10, 20], [1.0, 1.1, 2.0], 2)
    assert line_fit([5, 5], [1.0, 1.2]) == (0.0, pytest.approx(0.22))  # one layout: origin


def test_timing_runs_become_the_four_fits() -> None:
    """Medians per setting, then least squares: exact data gives the generating lines back."""
    runs = []
    for tokens in (14, 734, 1454, 2174, 2894):
        runs.append(_run(5, tokens, 0.05 + 1e-4 * tokens + 1e-8 * tokens**2, 0.5 + 1.0))
    runs += [_run(3, 14, 0.05 + 1e-4 * 14 + 1e-8 * 14**2, 0.5 + 0.6, new=1)]
    fits = fit_timings(runs)
    assert fits["encoder_s"] == pytest.approx((0.5, 0.2), abs=1e-9)
    assert fits["preprocess_s"] == pytest.approx((0.0, 0.01), abs=1e-9)
    assert fits["prefill_s"] == pytest.approx((0.05, 1e-4, 1e-8), rel=1e-4, abs=1e-9)
    # decode: 0.1 s per token + 1e-5 s per context token, context = n + 4 / 2
    assert fits["decode_s_per_token"] == pytest.approx((0.1, 1e-5), rel=1e-4)


def _run(partitions: int, tokens: int, prefill: float, encoder: float, new: int = 4) -> dict:
    return {
        "partitions": partitions,
        "llm_input_tokens": tokens,
        "preprocess_s": 0.01 * partitions,
        "encoder_s": encoder,
        "prefill_s": prefill,
        "decode_s": (new - 1) * (0.1 + 1e-5 * (tokens + new / 2)),
        "new_tokens": new,
    }


CALIBRATION = {
    "measured_at": "2026-12-01T00:00:00+00:00",
    "host": "test CPU (2 cores)",
    "model": "checkpoint synth",
    "model_key": model_key(SYNTH),
    "total_gib": 23.5,
    "available_gib": 21.0,
    "runtime_gib": 0.25,
    "encoder_activation_mib_per_partition": 30.0,
    "prefill_activation_kib_per_token": 100.0,
    "preprocess_s": [0.1, 0.0],
    "encoder_s": [0.5, 0.1],
    "prefill_s": [0.2, 0.001, 0.0],
    "decode_s_per_token": [0.05, 1e-6],
    "peak_check": [{"visual_tokens": 2880, "predicted_mib": 3000.0, "measured_mib": 3050.0}],
}


def calibrated(tmp_path, calibration: dict | None = None, name: str = "mine"):
    """The cpu profile plus a [calibration] section, written and read back like calibrate's."""
    base = load_profile("cpu")
    data = {
        "name": name,
        "description": "calibrated in a test",
        "memory": {"source": "meminfo", "unified": True, "os_gib": 0.0, "desktop": False,
                   "desktop_gib": 0.0, "cuda_context_gib": 0.0},
        "performance": {"bandwidth_gb_s": base.performance.bandwidth_gb_s,
                        "fp16_tflops": base.performance.fp16_tflops},
        "runtime": {"device": "cpu", "providers": ["CPUExecutionProvider"],
                    "quantization": "none", "compute_dtype": "float16",
                    "kv_cache_dtype": "float16"},
        "calibration": calibration or CALIBRATION,
    }  # fmt: skip
    comments = {"calibration.runtime_gib": "VmRSS after imports\nsecond line"}
    return write_profile(tmp_path / f"{name}.toml", data, comments)


def test_a_written_profile_loads_back_through_the_same_loader(tmp_path) -> None:
    written = calibrated(tmp_path)
    path = tmp_path / "mine.toml"
    text = path.read_text()
    assert "# VmRSS after imports\n# second line\nruntime_gib = 0.25\n" in text
    assert "[[calibration.peak_check]]\nvisual_tokens = 2880\n" in text
    again = load_profile(str(path))  # --profile takes the path as well as a name
    assert again == read_profile(path) == written
    assert again.calibration.prefill_s == (0.2, 0.001, 0.0)
    assert again.calibration.cuda_context_gib is None  # not measured: left out of the file
    assert [p.name for p in tmp_path.iterdir()] == ["mine.toml"]  # no temporary left behind


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prefill_s": [0.2, 0.001]}, "calibration.prefill_s: expected a list of 3 numbers"),
        ({"runtime_gib": -1.0}, "calibration.runtime_gib: expected a number >= 0, got -1.0"),
        ({"threads": 4}, "unknown key 'calibration.threads'"),
    ],
)
def test_a_bad_calibration_is_one_line_naming_the_key(tmp_path, change, message) -> None:
    with pytest.raises(ProfileError) as caught:
        calibrated(tmp_path, {**CALIBRATION, **change})
    text = str(caught.value)
    assert message in text and "\n" not in text and str(tmp_path / "mine.toml") in text
    assert not list(tmp_path.iterdir())  # nothing written


def test_calibrated_fixed_costs_and_activations_replace_the_model(tmp_path) -> None:
    """runtime 0.25 GiB, encoder 30 MiB x 5 partitions, prefill 100 KiB per token above the KV
    cache (x 17/16 for the decode-time layer copy): lines worked out by hand."""
    profile = calibrated(tmp_path)
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t"))
    lines = {line.name: line.bytes for line in plan.lines}
    assert lines["runtime"] == GIB // 4
    assert lines["encoder activations"] == 5 * 30 * MIB
    assert lines["prefill activations"] == 100 * KIB * (2880 + 40)
    assert lines["KV cache"] == int(SYNTH_KV_PER_TOKEN * 17 / 16 * (2880 + 40 + 32))
    assert lines["phases apart"] == -5 * 30 * MIB  # LLM phase (390 MB) > encoder (157 MB)


def test_ttft_target_keeps_the_largest_count_the_fits_allow(tmp_path) -> None:
    """preprocess 0.1 + encoder 0.5 + 0.1 x 5 partitions = 1.1 s; prefill 0.2 + 0.001 n with
    n = visual + 40 prompt tokens. A 2.3 s target leaves 1.2 s: n <= 1000, 960 visual tokens."""
    profile = calibrated(tmp_path)
    assert predict_ttft(SYNTH, profile, REQUEST, 960).seconds == pytest.approx(2.3)
    assert ttft_fit(SYNTH, profile, REQUEST, 2.3) == 960
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t"), ttft_target_s=2.3)
    assert plan.budget_tokens == 960 and plan.predicted_ttft_s == pytest.approx(2.3)
    assert "--ttft-target 2.3 s: at most 960 visual tokens" in plan.reasons
    with pytest.raises(BudgetError, match=r"even 1 visual token is predicted at 1\.34 s"):
        ttft_fit(SYNTH, profile, REQUEST, 1.0)


def test_a_concave_prefill_fit_never_predicts_less_for_more_tokens(tmp_path) -> None:
    """prefill 1.0 + 0.005 n - 1e-6 n^2 peaks at n = 2500 (7.25 s): from there it stays 7.25 s,
    and a target above every prediction keeps all 2880 tokens of the image, not more."""
    fits = {**CALIBRATION, "prefill_s": [1.0, 0.005, -1e-6]}
    profile = calibrated(tmp_path, fits)
    at_peak = predict_ttft(SYNTH, profile, REQUEST, 2500 - 40).seconds
    assert at_peak == pytest.approx(1.1 + 7.25)
    assert predict_ttft(SYNTH, profile, REQUEST, 2880).seconds == pytest.approx(at_peak)
    assert ttft_fit(SYNTH, profile, REQUEST, 100.0) == 2880
    # 1.1 + 1.0 + 0.005 n - 1e-6 n^2 <= 6.1  <=>  n <= 1000 (the rising branch): 960 visual
    assert ttft_fit(SYNTH, profile, REQUEST, 6.1) == 960


def test_a_first_request_adds_the_measured_cold_start(tmp_path) -> None:
    """`run` answers one request per process: 2.3 s warm (as above) + 1.5 s measured cold start,
    so a 3.8 s target for a first request keeps what 2.3 s keeps warm: 960 tokens."""
    profile = calibrated(tmp_path, {**CALIBRATION, "first_request_extra_s": 1.5})
    cold = PlanRequest(prompt_tokens=40, max_new_tokens=32, first_request=True)
    assert predict_ttft(SYNTH, profile, cold, 960).seconds == pytest.approx(3.8)
    assert predict_ttft(SYNTH, profile, REQUEST, 960).seconds == pytest.approx(2.3)
    assert ttft_fit(SYNTH, profile, cold, 3.8) == 960


def test_another_models_calibration_keeps_fixed_costs_only(tmp_path) -> None:
    profile = calibrated(tmp_path, {**CALIBRATION, "model_key": "another model"})
    plan = plan_budget(SYNTH, profile, REQUEST, MemoryCap(40 * GIB, "t"))
    lines = {line.name: line for line in plan.lines}
    assert lines["runtime"].bytes == GIB // 4  # device-level: still applies
    assert lines["encoder activations"].note.startswith("modelled")
    assert plan.ttft_note == "roofline estimate (no calibration of this model)"
    assert any(r.startswith("calibration: measured on another model") for r in plan.reasons)


def test_render_profile_writes_top_level_keys_before_tables() -> None:
    text = render_profile({"name": "x", "memory": {"a": 1.5, "b": True}}, {"": "head"})
    assert text == '# head\nname = "x"\n\n[memory]\na = 1.5\nb = true\n'


# --- what would fit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vicuna_dir():
    from edge_hired.models.reference_configs import llava_v16_vicuna_7b_config

    with tempfile.TemporaryDirectory() as folder:
        llava_v16_vicuna_7b_config().save_pretrained(folder)
        yield folder


def test_orin_nx_8gb_with_the_7b_at_8bit_lists_ways_to_fit(vicuna_dir, capsys) -> None:
    argv = ["plan", "--model", vicuna_dir, "--profile", "orin-nx-8gb", "--quantization", "8bit"]
    argv += ["--compile", "off"]  # the eager decode's growing KV cache (no static bucket)
    assert run_cli(argv) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "what would fit (each change alone):"
    options = "\n".join(lines[1:-1])
    assert "- boot headless (frees the desktop's 0.75 GiB): still" in options
    assert "- 4-bit weights instead of 8-bit: " in options
    assert "- --max-new-tokens 16 instead of 64: still" in options
    assert "then 576 visual tokens fit (20%)" in options
    assert "then 2880 visual tokens fit (100%)" in options
    assert lines[-1].startswith("edge-hired: error: orin-nx-8gb: memory cap")


# --- the CUDA context, against a baseline taken before CUDA initialises ------------------------


def meminfo_text(available_kib: int, free_kib: int) -> str:
    return (
        "MemTotal:        7802880 kB\n"
        f"MemFree:         {free_kib} kB\n"
        f"MemAvailable:    {available_kib} kB\n"
        "Cached:          2500000 kB\n"
    )


#: An Orin with the desktop up: 4.9 GB available of 7.4 GiB, most of the rest desktop and cache.
AVAILABLE_KIB, FREE_KIB = 4_900_000, 1_000_000
CONTEXT_KIB, TORCH_BLOCK = 287 * 1024, 2 * MIB  # the context, and torch's first block


def test_a_jetsons_context_is_memavailable_before_and_after_cuda_starts(
    tmp_path, monkeypatch
) -> None:
    """On a Jetson cudaMemGetInfo is MemFree: 'total - free' after the first call charged the
    desktop and the page cache (6,930 MiB here) as the context. Measured against MemAvailable
    read before CUDA initialises, less torch's own 2 MiB block, it is the 287 MiB it took."""
    import torch

    from edge_hired.facts import calibration_probe

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(AVAILABLE_KIB, FREE_KIB))
    taken = CONTEXT_KIB + TORCH_BLOCK // 1024
    after = meminfo_text(AVAILABLE_KIB - taken, FREE_KIB - taken)
    real_zeros = torch.zeros

    def zeros(*shape, device=None, **kwargs):
        if device != "cuda":
            return real_zeros(*shape, device=device, **kwargs)
        meminfo.write_text(after)  # what creating the context does to the board's RAM
        return real_zeros(*shape, **kwargs)

    monkeypatch.setattr(calibration_probe, "MEMINFO", meminfo, raising=False)
    monkeypatch.setattr(torch, "zeros", zeros)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: TORCH_BLOCK)
    free_after = (FREE_KIB - taken) * 1024
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (free_after, 7802880 * 1024))
    result = calibration_probe.cuda_step({"step": "cuda", "kind": "unified"})
    assert result["context_mib"] == 287.0
    assert result["context_source"].startswith("MemAvailable in /proc/meminfo, before and after")
    assert result["ort_mib"] is None  # this machine's onnxruntime has no CUDA provider


class FakeNvml:
    """pynvml's functions the context measurement calls, over one GPU another process uses."""

    def __init__(self, list_own: bool = True) -> None:
        self.list_own = list_own
        self.processes = [SimpleNamespace(pid=4242, usedGpuMemory=10 * GIB)]
        self.used = 10 * GIB + 300 * MIB

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(used=self.used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list:
        return list(self.processes)


class FakeCuda:
    """torch's CUDA calls: starting it makes a 500 MiB context plus torch's 2 MiB block."""

    def __init__(self, nvml: FakeNvml, used: int = 0) -> None:
        self.nvml, self.in_use = nvml, used

    def available(self) -> bool:
        return True

    def start(self) -> None:
        taken = 500 * MIB + TORCH_BLOCK
        self.nvml.used += taken
        if self.nvml.list_own:
            self.nvml.processes.append(SimpleNamespace(pid=os.getpid(), usedGpuMemory=taken))

    def reserved(self) -> int:
        return TORCH_BLOCK

    def used(self) -> int:
        return self.in_use


@pytest.mark.parametrize(
    ("list_own", "source"),
    [(True, "NVML per-process memory"), (False, "NVML device memory used")],
)
def test_a_discrete_gpus_context_leaves_other_processes_out(list_own: bool, source: str) -> None:
    """Another process's 10 GiB on the GPU is not the context: NVML's per-process figure (or,
    where a container hides our PID, the device figure's growth across CUDA's start) is."""
    from edge_hired.facts.calibration_probe import measure_cuda

    nvml = FakeNvml(list_own)
    result = measure_cuda("discrete", FakeCuda(nvml), nvml=nvml)
    assert result["context_mib"] == 500.0
    assert result["context_source"].startswith(source)


def test_without_nvml_the_context_is_everything_in_use_and_says_so() -> None:
    from edge_hired.facts.calibration_probe import measure_cuda

    class NoNvml:
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    result = measure_cuda("discrete", FakeCuda(FakeNvml(), used=3 * GIB), nvml=NoNvml())
    assert result["context_mib"] == 3072.0
    assert "all processes (no NVML for a baseline)" in result["context_source"]


@pytest.mark.parametrize(("jetson", "kind"), [(True, "unified"), (False, "discrete")])
def test_calibrate_tells_the_cuda_step_which_memory_to_read(monkeypatch, jetson, kind) -> None:
    from edge_hired.device import memory_info
    from edge_hired.facts import calibrate
    from edge_hired.facts.run_facts import RunFacts

    specs: list[dict] = []
    monkeypatch.setattr(calibrate, "probe", lambda spec: specs.append(spec) or {})
    monkeypatch.setattr(calibrate, "_is_jetson", lambda: jetson)
    monkeypatch.setattr(memory_info, "device_memory", lambda kind: kind)  # no GPU here
    facts = RunFacts(SYNTH, "cuda", (672, 672), 5, 2880, 48, 40)
    calibrate._measure({"hw": [672, 672]}, facts, [(672, 672)], 1, lambda step: None)
    assert next(spec for spec in specs if spec["step"] == "cuda")["kind"] == kind


@pytest.mark.parametrize(("base", "bf16"), [("orin-nx-8gb", True), ("t4-16gb", False)])
def test_a_calibrated_profile_keeps_what_its_base_says_of_bf16(monkeypatch, base, bf16) -> None:
    """The base profile's `bf16` travels into the calibrated file (else the device is asked)."""
    from edge_hired.facts import calibration_profile
    from edge_hired.profile_calibration import CalibrationSpec

    monkeypatch.setattr(calibration_profile, "base_profile_name", lambda: base)
    monkeypatch.setattr(calibration_profile, "_discrete", lambda: False)
    inputs = SimpleNamespace(compute_dtype="float16", kv_dtype="float16", quantization="none")
    spec = CalibrationSpec(**{**CALIBRATION, "peak_check": ()})
    data = calibration_profile.profile_data(
        "mine", SimpleNamespace(device="cuda", inputs=inputs), spec
    )
    assert data["runtime"]["bf16"] is bf16
    assert load_profile(base).runtime.bf16 is bf16
