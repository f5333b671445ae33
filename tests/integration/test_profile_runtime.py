"""`--profile` applies its [runtime] section to run, bench and eval; each flag overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_hired.cli.main import main
from edge_hired.errors import InvalidArgumentError
from edge_hired.profiles import PROFILES_ENV, RuntimeSpec
from edge_hired.runtime import sources
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.settings import RuntimeSettings, apply_profile

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


def _record_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}

    def record(model, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(Pipeline, "from_pretrained", staticmethod(record))
    return seen


def test_run_takes_dtype_and_quantization_from_the_profile(
    bf16_box: str, tiny_next_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_from_pretrained(monkeypatch)
    with pytest.raises(Loaded):
        main(["run", "--model", str(tiny_next_dir), "--profile", bf16_box, "--device", "cpu"])
    assert seen["dtype"] == "bf16" and seen["quantization"] == "4bit"


def test_flags_override_the_profile(
    bf16_box: str, tiny_next_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_from_pretrained(monkeypatch)
    argv = ["run", "--model", str(tiny_next_dir), "--profile", bf16_box, "--device", "cpu"]
    with pytest.raises(Loaded):
        main([*argv, "--dtype", "fp32", "--kv-dtype", "fp32", "--quant", "none"])
    assert seen["dtype"] == "fp32" and seen["quantization"] == "none"


def _record_load_pipeline(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What bench / eval ask the one pipeline loader for (they import it when they run)."""
    seen: dict = {}

    def record(model, bundle, device, dtype, providers, verify=True, quantization="none"):
        seen.update(dtype=dtype, providers=providers, quantization=quantization, device=device)
        raise Loaded

    monkeypatch.setattr(sources, "load_pipeline", record)
    return seen


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_bench_and_eval_take_the_profile_runtime(
    command: str,
    bf16_box: str,
    tiny_next_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _record_load_pipeline(monkeypatch)
    argv = [command, "--model", str(tiny_next_dir), "--out", str(tmp_path / command)]
    with pytest.raises(Loaded):
        main([*argv, "--profile", bf16_box, "--device", "cpu"])
    assert (seen["dtype"], seen["quantization"], seen["providers"]) == ("bf16", "4bit", (CPU,))


GPU_RUNTIME = RuntimeSpec(
    device="cuda",
    providers=("CUDAExecutionProvider", CPU),
    quantization="4bit",
    compute_dtype="float16",
    kv_cache_dtype="float16",
)


def test_a_gpu_profile_is_not_applied_to_a_cpu_run() -> None:
    settings = apply_profile(RuntimeSettings(), GPU_RUNTIME, "rtx", "cpu", bundle=False)
    assert settings.dtype is None and settings.quantization is None
    assert settings.notes == (
        "profile rtx is for cuda, this run is on cpu: its runtime defaults are not applied",
    )


def test_a_bundle_keeps_its_exported_quantization_and_dtype() -> None:
    settings = apply_profile(RuntimeSettings(), GPU_RUNTIME, "rtx", "cuda", bundle=True)
    assert settings.providers == ("CUDAExecutionProvider", CPU)
    assert settings.dtype is None and settings.quantization is None


def test_a_kv_dtype_unlike_the_compute_dtype_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="KV-cache dtype: expected the compute dtype"):
        apply_profile(RuntimeSettings(kv_dtype="fp32"), GPU_RUNTIME, "rtx", "cuda", bundle=False)
