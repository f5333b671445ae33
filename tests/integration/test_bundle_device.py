"""`run --bundle` on the devices it is for, checked on a CPU with fakes of ONNX Runtime.

Fakes record what `onnxruntime.InferenceSession` is given and delegate to the real CPU runtime,
so the bundle still runs; the TensorRT options, the provider probe's fallback, the compute dtype
and the figures `run --json` reports are checked without a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnxruntime
import pytest

from edge_hired.bundle.manifest import read_manifest
from edge_hired.cli.main import main
from edge_hired.device import providers as provider_module
from edge_hired.device import tensorrt
from edge_hired.device.providers import ProviderChoice
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.planner.costs import ort_gpu_mem_limit
from edge_hired.planner.inputs import PlanInputs
from edge_hired.runtime import bundle_runtime
from edge_hired.runtime.bundle_runtime import (
    BundleLoadOptions,
    load_bundle_pipeline,
    session_providers,
)
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import SelectionOptions
from tests.helpers import textured_image

pytestmark = pytest.mark.integration

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture(scope="module")
def fp16_bundle(tiny_next_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny-next-fp16"
    options = ExportOptions(quantization="none", dtype="fp16", measure_memory=False)
    export_bundle(str(tiny_next_dir), out, options)
    return out


class RecordingOrt:
    """onnxruntime as a GPU build would look: lists TRT and CUDA, records every session."""

    __version__ = "1.99.0-test"

    def __init__(self) -> None:
        self.sessions: list[list] = []

    def get_available_providers(self) -> list[str]:
        return [TRT, CUDA, CPU]

    def InferenceSession(self, path, providers):
        self.sessions.append(list(providers))
        return onnxruntime.InferenceSession(str(path), providers=[CPU])


def cuda_entry(manifest) -> tuple[str, dict[str, str]]:
    """CUDA with the arena the planner counts: grown as requested, up to its limit."""
    limit = ort_gpu_mem_limit(PlanInputs.from_manifest(manifest))
    return CUDA, {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(limit)}


@pytest.fixture
def gpu_ort(monkeypatch: pytest.MonkeyPatch) -> RecordingOrt:
    fake = RecordingOrt()
    for module in (bundle_runtime, provider_module):
        monkeypatch.setattr(module, "import_onnxruntime", lambda: fake)
    monkeypatch.setattr(tensorrt, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(tensorrt, "gpu_name", lambda index=0: "Orin (nvgpu)")
    return fake


def test_tensorrt_gets_engine_cache_fp16_and_one_profile_for_every_grid(
    fp16_bundle: Path, gpu_ort: RecordingOrt, tmp_path: Path
) -> None:
    manifest = read_manifest(fp16_bundle)
    said: list[str] = []
    options = BundleLoadOptions(cache_root=tmp_path, notify=said.append)
    entries = session_providers(ProviderChoice((TRT, CUDA, CPU), "test"), manifest, options)
    name, trt = entries[0]
    assert name == TRT and entries[1:] == [cuda_entry(manifest), CPU]
    identity = tensorrt.EngineIdentity(
        bundle_runtime._encoder_sha256(manifest), "1.99.0-test", "10.3.0", "Orin (nvgpu)"
    )
    directory = tmp_path / "tensorrt" / identity.key()
    assert trt["trt_engine_cache_enable"] == trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"] == str(directory)
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_profile_min_shapes"] == "pixel_values:1x3x336x336"
    assert trt["trt_profile_max_shapes"] == "pixel_values:5x3x336x336"  # 1 + the 2x2 grid
    assert said == [tensorrt.COLD_CACHE_MESSAGE]
    (directory / "encoder.engine").write_bytes(b"engine")
    session_providers(ProviderChoice((TRT, CUDA, CPU), "test"), manifest, options)
    assert said == [tensorrt.COLD_CACHE_MESSAGE]  # warm cache: no second notice


def test_engine_key_changes_with_anything_that_invalidates_an_engine() -> None:
    base = tensorrt.EngineIdentity("abc", "1.20.0", "10.3.0", "Orin")
    keys = {
        base.key(),
        tensorrt.EngineIdentity("abd", "1.20.0", "10.3.0", "Orin").key(),
        tensorrt.EngineIdentity("abc", "1.21.0", "10.3.0", "Orin").key(),
        tensorrt.EngineIdentity("abc", "1.20.0", "10.4.0", "Orin").key(),
        tensorrt.EngineIdentity("abc", "1.20.0", "10.3.0", "RTX 4060").key(),
    }
    assert len(keys) == 5


def test_a_provider_that_fails_its_probe_is_dropped_with_the_reason(
    fp16_bundle: Path, gpu_ort: RecordingOrt, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = {TRT: "libnvinfer not found"}
    monkeypatch.setattr(provider_module, "probe_once", lambda name: failing.get(name))
    pipeline = load_bundle_pipeline(fp16_bundle, BundleLoadOptions(verify=False))
    assert gpu_ort.sessions == [[cuda_entry(read_manifest(fp16_bundle)), CPU]]
    assert "TensorRT listed but libnvinfer not found: CUDAExecutionProvider" in (
        pipeline.device_reason
    )


def test_fp16_bundle_on_a_cpu_computes_in_fp32_or_bf16_and_says_so(fp16_bundle: Path) -> None:
    pipeline = load_bundle_pipeline(fp16_bundle, BundleLoadOptions(device="cpu"))
    assert pipeline.parts.compute_dtype is not None
    dtype = str(pipeline.parts.compute_dtype).removeprefix("torch.")
    assert dtype in ("float32", "bfloat16")
    assert pipeline.parts.llm.get_input_embeddings().weight.dtype == pipeline.parts.compute_dtype
    assert f"compute {dtype}: fp16 bundle on a CPU" in pipeline.device_reason
    result = pipeline.run(
        textured_image(300, 600), "What?", SelectionOptions(ratio=0.2), SamplingOptions(3)
    )
    assert result.compute_dtype == dtype
    assert result.encoder_provider == CPU  # what the session really registered
    assert result.device_peak_mib is None  # a CPU has no device memory of its own


def test_run_json_reports_dtype_provider_and_device_peak(fp16_bundle: Path, capsys) -> None:
    code = main(["run", "--bundle", str(fp16_bundle), "--json", "--max-new-tokens", "2"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["compute_dtype"] in ("float32", "bfloat16")
    assert data["encoder_provider"] == CPU
    assert "device_peak_mib" in data and data["device_peak_mib"] is None


def test_without_onnxruntime_run_bundle_names_the_package(
    fp16_bundle: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    code = main(["run", "--bundle", str(fp16_bundle), "--max-new-tokens", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("edge-hired: error: onnxruntime is not installed: pip install")
    assert "Traceback" not in "\n".join(err)
