"""The exported Qwen-VL vision tower behind the same call as the in-process `QwenVisionEncoder`.

One ONNX graph serves every image size: the host computes the grid-dependent inputs
(`qwen_encoder_inputs`), ONNX Runtime returns the merged features, Qwen3-VL's DeepStack features
and the per-patch signal in stock order, and the signal is summed per merge unit here exactly as
the in-process encoder sums it (`NativeGeometry.block_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edge_hired.device.ort_providers import import_onnxruntime
from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.runtime.qwen_encoder_inputs import encoder_inputs
from edge_hired.runtime.qwen_encoder_spec import (
    FEATURES,
    PIXELS,
    RECEIVED,
    QwenEncoderSpec,
    deepstack_names,
)
from edge_hired.runtime.qwen_vision import NativePixels, NativeVisionOutput

NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32}


class OnnxQwenEncoder:
    """pixels -> merged (and DeepStack) features plus the signal rows, through ONNX Runtime."""

    def __init__(
        self,
        path: Any,
        providers: Sequence[Any],
        input_dtype: str,
        spec: QwenEncoderSpec,
        ort: Any = None,
    ) -> None:
        if input_dtype not in NUMPY_DTYPES:
            raise InvalidArgumentError(
                expected("encoder input dtype", sorted(NUMPY_DTYPES), input_dtype)
            )
        ort = ort if ort is not None else import_onnxruntime()
        self.session = ort.InferenceSession(str(path), providers=list(providers))
        self.input_dtype = NUMPY_DTYPES[input_dtype]
        self.spec = spec

    @property
    def provider(self) -> str:
        """The execution provider ONNX Runtime really registered first for this session."""
        return self.session.get_providers()[0]

    def __call__(self, pixels: NativePixels) -> NativeVisionOutput:
        """Encode one image's patches; the signal is summed per merge unit (`block_scores`)."""
        feeds = encoder_inputs(pixels.grid_thw.reshape(-1).tolist(), self.spec)
        feeds[PIXELS] = pixels.pixel_values.detach().cpu().numpy().astype(self.input_dtype)
        names = [FEATURES, *deepstack_names(self.spec.num_deepstack), RECEIVED]
        features, *deepstack, received = self.session.run(names, feeds)
        units = torch.from_numpy(pixels.geometry.block_scores(received[None]))
        merged = _tensor(features)[None]
        return NativeVisionOutput(
            merged,
            units,
            units,
            merged,
            "received",
            tuple(_tensor(layer) for layer in deepstack),
            pixels.grid_thw,
            pixels.resize_budget,
        )


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU torch tensor over an ONNX Runtime output."""
    return torch.from_numpy(np.ascontiguousarray(array))
