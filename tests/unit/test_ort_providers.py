"""Provider choice trusts a probe, not the build's list; failures become plain reasons."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from edge_hired.device import ort_providers
from edge_hired.device.ort_providers import (
    capture_fd,
    cuda_major_mismatch,
    explain_failure,
    onnxruntime_cuda_version,
    probe_provider,
)
from edge_hired.device.providers import (
    ProviderChoice,
    choose_providers,
    cuda_arena_options,
    session_entries,
)
from edge_hired.errors import InvalidArgumentError

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


class FallingBackOrt:
    """ONNX Runtime's Python layer when an EP fails: prints 'EP Error', retries on the CPU."""

    def __init__(self, printed: str = "", raises: Exception | None = None) -> None:
        self.printed, self.raises = printed, raises

    def InferenceSession(self, model, providers):
        print(self.printed)
        ort = self

        class Session:
            def run(self, outputs, feeds):
                if ort.raises:
                    raise ort.raises
                return [feeds["x"] * 2]

            def get_providers(self):
                return [CPU] if ort.printed else [providers[0]]

        return Session()


def test_missing_libnvinfer_is_named() -> None:
    ort = FallingBackOrt(
        "EP Error libnvinfer.so.10: cannot open shared object file when using "
        "['TensorrtExecutionProvider']\nFalling back to ['CPUExecutionProvider'] and retrying."
    )
    assert probe_provider(TRT, ort=ort) == (
        "libnvinfer.so.10 not found (EP Error libnvinfer.so.10: cannot open shared object file "
        "when using ['TensorrtExecutionProvider'])"
    )


def test_a_wheel_without_the_gpus_architecture_fails_at_the_first_run() -> None:
    ort = FallingBackOrt(raises=RuntimeError("CUDA failure 209: no kernel image is available"))
    assert probe_provider(CUDA, ort=ort) == "this wheel lacks the GPU's architecture"


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_the_real_cpu_build_does_not_pass_a_cuda_probe() -> None:
    why = probe_provider(CUDA)  # the CPU wheel: ORT warns and runs on the CPU instead
    assert why is not None and "fell back" in why
    assert probe_provider(CPU) is None


def test_unknown_errors_keep_their_first_line() -> None:
    assert explain_failure("\n  something odd happened\nmore") == "something odd happened"


def test_choice_falls_back_with_the_printed_reason() -> None:
    failing = {TRT: "libnvinfer not found"}
    choice = choose_providers(available=[TRT, CUDA, CPU], probe=failing.get)
    assert choice == ProviderChoice(
        (CUDA, CPU), "TensorRT listed but libnvinfer not found: CUDAExecutionProvider"
    )


def test_requested_providers_are_probed_too() -> None:
    choice = choose_providers(["cuda", "cpu"], available=[CUDA, CPU], probe={CUDA: "x"}.get)
    assert choice.providers == (CPU,)
    assert choice.reason == "CUDA listed but x: CPUExecutionProvider"


def test_a_working_first_choice_keeps_the_old_reason() -> None:
    choice = choose_providers(available=[CUDA, CPU], probe=lambda name: None)
    assert choice.providers == (CUDA, CPU)
    assert choice.reason.startswith("CUDAExecutionProvider: TensorRT not available")


def test_nothing_that_loads_is_one_line() -> None:
    with pytest.raises(
        InvalidArgumentError, match="expected one that loads of CUDAExecutionProvider"
    ):
        choose_providers(["cuda"], available=[CUDA, CPU], probe=lambda name: "broken")


def test_probe_graph_runs_on_the_cpu() -> None:
    import onnxruntime

    from edge_hired.device.ort_providers import _probe_graph

    session = onnxruntime.InferenceSession(_probe_graph(), providers=[CPU])
    (y,) = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    assert y.tolist() == [[2.0] * 4]


#: What ONNX Runtime's C++ logger writes when the CUDA provider's library cannot load.
CUDA_LOAD_ERROR = (
    "2026-12-07 07:00:00.0 [E:onnxruntime:Default, provider_bridge_ort.cc:2036 "
    "TryGetProviderInfo_CUDA] /onnxruntime_src/onnxruntime/core/session/"
    "provider_bridge_ort.cc:1637 "
    "onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : "
    "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: "
    "cannot open shared object file: No such file or directory\n"
)


class CppLoggingOrt:
    """ONNX Runtime whose C++ side writes the load error to descriptor 2, then runs on the CPU
    (nothing on stdout): what a CUDA-12 onnxruntime-gpu does next to a CUDA-13 torch."""

    def InferenceSession(self, model, providers):
        os.write(2, CUDA_LOAD_ERROR.encode())

        class Session:
            def run(self, outputs, feeds):
                return [feeds["x"] * 2]

            def get_providers(self):
                return [CPU]

        return Session()


def test_the_library_error_ort_writes_to_fd_2_is_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(ort_providers, "onnxruntime_cuda_version", lambda: None)
    assert probe_provider(CUDA, ort=CppLoggingOrt()) == (
        "libcublasLt.so.12 not found (Failed to load library libonnxruntime_providers_cuda.so "
        "with error: libcublasLt.so.12: cannot open shared object file: No such file or directory)"
    )


def test_a_cuda_major_mismatch_is_named_beside_the_library(monkeypatch) -> None:
    monkeypatch.setattr(ort_providers, "onnxruntime_cuda_version", lambda: "12.2")
    monkeypatch.setattr(ort_providers, "torch_cuda_version", lambda: "13.0")
    why = probe_provider(CUDA, ort=CppLoggingOrt())
    assert why.startswith("libcublasLt.so.12 not found (Failed to load library")
    assert why.endswith(
        "; onnxruntime-gpu is built for CUDA 12.2 and torch for CUDA 13.0: install the "
        "onnxruntime-gpu built for CUDA 13"
    )


def test_cuda_majors_are_compared_by_major_only() -> None:
    assert cuda_major_mismatch("12.2", "12.8") is None
    assert cuda_major_mismatch(None, "13.0") is None and cuda_major_mismatch("12.6", None) is None
    assert cuda_major_mismatch("13.0", "12.6").startswith("onnxruntime-gpu is built for CUDA 13.0")
    assert onnxruntime_cuda_version(SimpleNamespace(cuda_version="12.2")) == "12.2"
    assert onnxruntime_cuda_version(SimpleNamespace(package_name="onnxruntime")) is None
    assert onnxruntime_cuda_version() is None  # this machine's CPU wheel records no CUDA


def test_capture_fd_takes_descriptor_writes_and_gives_the_descriptor_back(capfd) -> None:
    with capture_fd(2) as captured:
        os.write(2, b"from C++\n")
    os.write(2, b"after\n")
    assert captured.text == "from C++\n"
    assert capfd.readouterr().err == "after\n"


def test_the_cuda_provider_gets_an_explicit_arena_and_tensorrt_its_options() -> None:
    trt = {"trt_engine_cache_enable": "True"}
    entries = session_entries((TRT, CUDA, CPU), 790 * 2**20, trt)
    arena = {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": "828375040"}
    assert entries == [(TRT, trt), (CUDA, arena), CPU]
    assert session_entries((CPU,), 1) == [CPU]
    assert session_entries((CUDA, CPU), None) == [CUDA, CPU]
    with pytest.raises(InvalidArgumentError, match="gpu_mem_limit: expected bytes >= 1"):
        cuda_arena_options(0)
