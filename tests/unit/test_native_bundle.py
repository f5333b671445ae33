"""The native-resolution bundle loader's small decisions: TensorRT left out with its reason, and
the projector slot that must never be called (the merger runs inside the ONNX graph)."""

from __future__ import annotations

import pytest
import torch

from edge_hired.device.providers import ProviderChoice
from edge_hired.errors import ModelLoadError
from edge_hired.runtime.native_bundle import (
    MERGER_IN_ENCODER,
    _merger_in_encoder,
    is_native_family,
    without_tensorrt,
)


def test_tensorrt_is_left_out_and_the_reason_says_why() -> None:
    every = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    choice = without_tensorrt(ProviderChoice(every, "probed"))
    assert choice.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert choice.reason.startswith("probed; TensorRT skipped: ")
    assert "image size" in choice.reason


def test_a_choice_without_tensorrt_is_kept_as_it_is() -> None:
    choice = ProviderChoice(("CUDAExecutionProvider", "CPUExecutionProvider"), "probed")
    assert without_tensorrt(choice) is choice


def test_the_projector_slot_refuses_in_one_line() -> None:
    with pytest.raises(ModelLoadError) as raised:
        _merger_in_encoder(torch.zeros(1, 4))
    assert str(raised.value) == MERGER_IN_ENCODER and "\n" not in MERGER_IN_ENCODER


@pytest.mark.parametrize(
    ("family", "native"),
    [("qwen3_vl", True), ("qwen2_5_vl", True), ("qwen3_5", True), ("llava_next", False),
     ("internvl", False)],
)  # fmt: skip
def test_native_families(family: str, native: bool) -> None:
    assert is_native_family(family) is native
