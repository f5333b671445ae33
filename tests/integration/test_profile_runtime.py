"""`--profile` applies its [runtime] section to run, bench and eval; each flag overrides it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_hired.cli.main import main
from edge_hired.errors import InvalidArgumentError
from edge_hired.profiles import PROFILES_ENV, load_profile
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.settings import applicable_runtime, kv_cache_dtype

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CPU = "CPUExecutionProvider"


class Loaded(Exception):
    """Stops the command once the load call has been recorded."""


@pytest.fixture
def bf16_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """profiles/cpu.toml as 'bf16-box': 4bit, bfloat16 compute and KV cache."""
    text = (REPO / "profiles" / "cpu.toml").read_text()
    text = text.replace('name = "cpu"', 'name = "bf16-box"')
    text = text.replace('quantization = "none"', 'quantization = "4bit"')
    text = text.replace('compute_dtype = "float32"', 'compute_dtype = "bfloat16"')
    text = text.replace('kv_cache_dtype = "float32"', 'kv_cache_dtype = "bfloat16"')
    (tmp_path / "bf16-box.toml").write_text(text)
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    return "bf16-box"


def _record_target(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The target every command hands the one loader (`Pipeline.from_pretrained` for --model)."""
    seen: dict = {}

    def record(model, **kwargs):
        seen["target"] = kwargs["target"]
        raise Loaded

    monkeypatch.setattr(Pipeline, "from_pretrained", staticmethod(record))
    return seen


def test_run_takes_dtype_and_quantization_from_the_profile(
    bf16_box: str, tiny_next_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_target(monkeypatch)
    with pytest.raises(Loaded):
        main(["run", "--model", str(tiny_next_dir), "--profile", bf16_box, "--device", "cpu"])
    target = seen["target"]
    assert (target.compute_dtype, target.kv_dtype, target.quantization) == (
        "bfloat16",
        "bfloat16",
        "4bit",
    )
    assert target.profile.name == bf16_box and target.providers == (CPU,)


def test_flags_override_the_profile(
    bf16_box: str, tiny_next_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_target(monkeypatch)
    argv = ["run", "--model", str(tiny_next_dir), "--profile", bf16_box, "--device", "cpu"]
    with pytest.raises(Loaded):
        main([*argv, "--dtype", "fp32", "--kv-dtype", "fp32", "--quant", "none"])
    target = seen["target"]
    assert (target.compute_dtype, target.kv_dtype, target.quantization) == (
        "float32",
        "float32",
        "none",
    )


GPU_PROFILE = load_profile(REPO / "profiles" / "rtx-4060-8gb.toml")

COMMANDS = {
    "run": [],
    "bench": ["--out", "OUT"],
    "eval": ["--out", "OUT"],
    "show": ["--out", "OUT.png"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_the_same_runtime_flags_and_profile(
    command: str,
    bf16_box: str,
    tiny_next_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One set of flags, one precedence: the profile fills dtype and quantization, the flags
    win for providers and the memory cap, in every command that loads a model."""
    seen = _record_target(monkeypatch)
    extra = [a.replace("OUT", str(tmp_path / "out")) for a in COMMANDS[command]]
    argv = [command, "--model", str(tiny_next_dir), *extra, "--profile", bf16_box]
    flags = ["--device", "cpu", "--providers", "cpu", "--memory-cap", "3", "--no-verify"]
    with pytest.raises(Loaded):
        main([*argv, *flags, "--ttft-target", "9", "--headless"])
    target = seen["target"]
    assert (target.compute_dtype, target.quantization) == ("bfloat16", "4bit")
    assert target.providers == ("cpu",) and target.verify is False
    assert (target.memory_cap_gib, target.ttft_target_s, target.headless) == (3.0, 9.0, True)
    assert target.profile is not None and target.profile.name == bf16_box


def test_plan_takes_the_same_flags(
    bf16_box: str, tiny_next_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """`plan` plans what `run` would load: the profile's 4bit and bf16 unless flags say else."""
    argv = ["plan", "--model", str(tiny_next_dir), "--profile", bf16_box, "--json"]
    assert main([*argv, "--memory-cap", "3"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["source"] == "config llava_next (2-layer LLM, 4bit, bfloat16)"
    assert main([*argv, "--quant", "none", "--dtype", "fp32"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["source"] == "config llava_next (2-layer LLM, none, float32)"


def test_a_gpu_profile_is_not_applied_to_a_cpu_run() -> None:
    runtime, notes = applicable_runtime(GPU_PROFILE, "cpu")
    assert runtime is None
    assert notes == (
        "profile rtx-4060-8gb is for cuda, this run is on cpu: "
        "its runtime defaults are not applied",
    )


def test_a_kv_dtype_unlike_the_compute_dtype_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="KV-cache dtype: expected the compute dtype"):
        kv_cache_dtype("float32", "float16", GPU_PROFILE.runtime)


def test_a_profile_kv_dtype_unlike_the_compute_dtype_is_noted_not_applied() -> None:
    kv, notes = kv_cache_dtype(None, "float32", GPU_PROFILE.runtime)
    assert kv == "float32"
    assert notes == (
        "KV cache in float32, the compute dtype (the profile's float16 applies to a run "
        "computing in it)",
    )


RUNTIME_FLAGS = [
    "--device", "cpu", "--dtype", "bf16", "--kv-dtype", "bf16", "--quant", "4bit",
    "--providers", "cpu", "--no-verify", "--profile", "PROFILE", "--memory-cap", "3",
    "--ttft-target", "9", "--headless",
]  # fmt: skip
SOURCE = {"plan": ["--model", "M"], "bench": ["--model", "M", "--out", "O"]}


@pytest.mark.parametrize("command", ["run", "serve", "bench", "eval", "plan", "show"])
def test_every_command_parses_the_one_set_of_runtime_flags(command: str) -> None:
    from edge_hired.cli.main import build_parser

    extra = ["--out", "O.png"] if command == "show" else SOURCE.get(command, [])
    args = build_parser().parse_args([command, *extra, *RUNTIME_FLAGS])
    got = {
        name: getattr(args, name)
        for name in ("device", "dtype", "kv_dtype", "quant", "providers", "no_verify")
    }
    assert got == {
        "device": "cpu",
        "dtype": "bf16",
        "kv_dtype": "bf16",
        "quant": "4bit",
        "providers": "cpu",
        "no_verify": True,
    }
    assert (args.profile, args.memory_cap, args.ttft_target, args.headless) == (
        "PROFILE",
        3.0,
        9.0,
        True,
    )


def test_serve_builds_the_same_target_with_the_cap_over_the_profile(
    bf16_box: str, tiny_next_dir: Path
) -> None:
    from edge_hired.cli.main import build_parser
    from edge_hired.cli.runtime_flags import source_from_args, target_from_args

    argv = ["serve", "--model", str(tiny_next_dir), "--profile", bf16_box, "--memory-cap", "3"]
    args = build_parser().parse_args([*argv, "--device", "cpu", "--providers", "cpu"])
    target = target_from_args(args, source_from_args(args), quiet=True)
    assert (target.compute_dtype, target.quantization, target.providers) == (
        "bfloat16",
        "4bit",
        ("cpu",),
    )
    assert target.memory_cap_gib == 3.0 and target.profile.name == bf16_box
