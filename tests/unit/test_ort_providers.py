"""Provider choice trusts a probe, not the build's list; failures become plain reasons."""

from __future__ import annotations

import numpy as np
import pytest

from edge_hired.device.ort_providers import explain_failure, probe_provider
from edge_hired.device.providers import ProviderChoice, choose_providers
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
    assert probe_provider(TRT, ort=ort) == "libnvinfer not found"


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
