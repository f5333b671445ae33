"""The resolved target: one decision of device, compute and KV dtype, quantization and providers.

GPUs are faked (`FakeProbe`): a compute capability decides bf16, as `cuda_has_bf16` reads it.
Checkpoints are config directories only (no weights): the target reads the config's dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edge_hired.device.compute_dtype import SavedModel, choose_compute_dtype
from edge_hired.device.torch_device import BF16_CAPABILITY, DeviceChoice
from edge_hired.errors import InvalidArgumentError
from edge_hired.models.tiny import config_kwargs
from edge_hired.profiles import load_profile
from edge_hired.runtime.model_source import ModelSource
from edge_hired.runtime.target import (
    ProfileProbe,
    TargetFlags,
    config_dtype,
    resolve_target,
)

REPO = Path(__file__).resolve().parents[2]
TURING, AMPERE, ORIN = (7, 5), (8, 0), (8, 7)


class FakeProbe:
    """A machine with one CUDA GPU of the given compute capability (or none)."""

    def __init__(self, capability: tuple[int, int] | None, cpu_bf16: bool = False) -> None:
        self.capability, self.cpu_bf16 = capability, cpu_bf16

    def choose(self, requested: str) -> DeviceChoice:
        kind = "cuda" if self.capability and requested != "cpu" else "cpu"
        return DeviceChoice(torch.device(kind), f"{kind}: fake")

    def bf16(self, device: torch.device) -> bool:
        if device.type == "cpu":
            return self.cpu_bf16
        return self.capability >= BF16_CAPABILITY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """Writes a tiny LLaVA-NeXT config saved in a given dtype; returns its directory."""
    from transformers import LlavaNextConfig

    def write(dtype: str) -> str:
        folder = tmp_path_factory.mktemp(f"ckpt-{dtype}")
        config = LlavaNextConfig(**config_kwargs("tiny-llava-next"))
        data = json.loads(config.to_json_string())
        data["dtype"] = dtype
        (folder / "config.json").write_text(json.dumps(data))
        return str(folder)

    return write


def target_of(folder: str, probe: FakeProbe, **flags):
    return resolve_target(TargetFlags(**flags), ModelSource("model", folder), probe)


@pytest.mark.parametrize(
    ("capability", "expected", "warns"),
    [(TURING, "float16", True), (AMPERE, "bfloat16", False), (ORIN, "bfloat16", False)],
)
def test_a_bf16_checkpoint_computes_in_bf16_where_the_gpu_does_it(
    checkpoint, capability, expected: str, warns: bool
) -> None:
    target = target_of(checkpoint("bfloat16"), FakeProbe(capability))
    assert target.device.type == "cuda"
    assert (target.compute_dtype, target.kv_dtype) == (expected, expected)
    assert bool(target.warnings) is warns
    if warns:
        assert target.warnings[0].startswith("the checkpoint was trained in bfloat16")
        assert "\n" not in target.warnings[0]


def test_fp32_and_fp16_checkpoints_keep_fp16_on_any_gpu_and_fp32_on_a_cpu(checkpoint) -> None:
    for saved in ("float32", "float16"):
        assert target_of(checkpoint(saved), FakeProbe(ORIN)).compute_dtype == "float16"
        on_cpu = target_of(checkpoint(saved), FakeProbe(ORIN), device="cpu")
        assert on_cpu.compute_dtype == "float32" and on_cpu.device.type == "cpu"
    bf16_on_cpu = target_of(checkpoint("bfloat16"), FakeProbe(None, cpu_bf16=True))
    assert bf16_on_cpu.compute_dtype == "float32"  # a CPU as before: fp32 for checkpoints


def test_the_flag_wins_and_8bit_computes_in_fp16(checkpoint) -> None:
    folder = checkpoint("bfloat16")
    assert target_of(folder, FakeProbe(ORIN), dtype="fp32").compute_dtype == "float32"
    eight = target_of(folder, FakeProbe(ORIN), quantization="8bit")
    assert (eight.compute_dtype, eight.quantization) == ("float16", "8bit")
    assert "LLM 8bit (bitsandbytes at load)" in eight.reason


def test_a_kv_dtype_flag_unlike_the_compute_dtype_is_refused(checkpoint) -> None:
    with pytest.raises(InvalidArgumentError, match="KV-cache dtype: expected the compute dtype"):
        target_of(checkpoint("float32"), FakeProbe(ORIN), kv_dtype="fp32")


@pytest.mark.parametrize(("profile", "expected"), [("t4-16gb", "float16"), ("p40-24gb", "float16")])
def test_profiles_of_gpus_without_bf16_say_so(checkpoint, profile: str, expected: str) -> None:
    """The profile's `bf16 = false` decides even where the fake GPU would do bf16."""
    loaded = load_profile(profile)
    assert loaded.runtime.bf16 is False
    target = target_of(checkpoint("bfloat16"), FakeProbe(ORIN), profile=loaded, quantization="none")
    assert target.compute_dtype == expected and target.warnings


def test_ampere_and_newer_profiles_do_bf16(checkpoint) -> None:
    for name in ("orin-nano-8gb", "agx-orin-64gb", "rtx-4060-8gb", "agx-thor-128gb"):
        profile = load_profile(name)
        assert profile.runtime.bf16 is True, name
        target = target_of(checkpoint("bfloat16"), FakeProbe(TURING), profile=profile)
        assert target.compute_dtype == "bfloat16", name  # the profile decides, not the probe


def test_plan_targets_the_profiles_device_not_this_machine(checkpoint) -> None:
    profile = load_profile("orin-nano-8gb")
    flags = TargetFlags(profile=profile)
    source = ModelSource("model", checkpoint("float32"))
    target = resolve_target(flags, source, ProfileProbe(profile))
    assert target.device.type == "cuda" and target.quantization == "4bit"
    assert target.compute_dtype == "float16" and target.profile is profile


def test_bundle_rules_are_unchanged_for_cpus() -> None:
    fp16 = SavedModel("float16", "none", bundle=True)
    assert choose_compute_dtype("cpu", fp16, bf16=True).dtype == "bfloat16"
    assert choose_compute_dtype("cpu", fp16, bf16=False).dtype == "float32"
    four = SavedModel("float16", "4bit", bundle=True)
    assert choose_compute_dtype("cpu", four, bf16=True).dtype == "float16"
    assert choose_compute_dtype("cuda", fp16, bf16=True).dtype == "float16"


def test_config_dtype_reads_dtype_or_torch_dtype_and_defaults_to_fp32() -> None:
    class Config:
        def __init__(self, **kw) -> None:
            self.__dict__.update(kw)

    assert config_dtype(Config(dtype=torch.bfloat16)) == "bfloat16"
    assert config_dtype(Config(torch_dtype="float16")) == "float16"
    assert config_dtype(Config(dtype="auto", text_config=Config(dtype="bfloat16"))) == "bfloat16"
    assert config_dtype(Config()) == "float32"


@pytest.mark.parametrize(
    ("profile", "flag", "compiled"),
    [
        ("rtx-4060-8gb", "auto", True),  # discrete GPU: the static cache is its own memory
        ("orin-nx-8gb", "auto", False),  # unified: it would sit beside the prefill's cache
        ("orin-nx-8gb", "on", True),
    ],
)
def test_auto_compiles_the_decode_step_on_discrete_gpus_only(
    checkpoint, profile: str, flag: str, compiled: bool
) -> None:
    target = target_of(checkpoint("float16"), FakeProbe(ORIN), profile=profile, compile=flag)
    assert target.compile_decode is compiled


@pytest.mark.parametrize(
    ("profile", "flag", "compiled"),
    [("rtx-4060-8gb", "on", True), ("rtx-4060-8gb", "auto", True), ("orin-nx-8gb", "auto", False)],
)
def test_a_qwen_vl_checkpoint_compiles_as_any_other(profile: str, flag: str, compiled) -> None:
    """M-RoPE rows ride the static step now: only the device and the flag decide."""
    from edge_hired.models.tiny import default_checkpoint

    folder = str(default_checkpoint("tiny-qwen3-vl"))
    target = target_of(folder, FakeProbe(AMPERE), profile=profile, compile=flag)
    assert target.compile_decode is compiled
    assert not any("M-RoPE" in line for line in (*target.notes, *target.reasons))
