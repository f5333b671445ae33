"""ONNX Runtime as the bundle runtime meets it: import it, and prove a provider loads by trying.

`get_available_providers()` is the list the wheel was compiled with, not what loads: with
libnvinfer missing, or a wheel built without this GPU's architecture, TensorRT and CUDA are
still listed and fail at session creation or at the first run (where ONNX Runtime's Python
layer prints "EP Error ..." and silently falls back to the CPU). `probe_provider` builds a
one-node graph, runs it on the provider alone and returns why it failed, or None.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from edge_hired.errors import EdgeHiredError

#: What `run --bundle` says when no ONNX Runtime is installed (one line, exit 2).
INSTALL_HINT = (
    "onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu (NVIDIA "
    "x86_64; on a Jetson take onnxruntime-gpu from NVIDIA's Jetson index, see README 'Jetson')"
)

#: Phrases of a provider's load failure -> the plain reason printed.
_FAILURES = (
    ("libnvinfer", "libnvinfer not found"),
    ("libcudnn", "libcudnn not found"),
    ("libcublas", "libcublas not found"),
    ("libcudart", "libcudart not found"),
    ("no kernel image", "this wheel lacks the GPU's architecture"),
    ("driver version is insufficient", "the NVIDIA driver is too old for this wheel"),
)

Probe = Callable[[str, dict[str, str] | None], str | None]


class OnnxRuntimeMissingError(EdgeHiredError):
    """No onnxruntime module: a bundle's encoder cannot run."""


def import_onnxruntime() -> ModuleType:
    """`onnxruntime`, or one line naming the package to install."""
    try:
        import onnxruntime
    except ImportError as error:
        raise OnnxRuntimeMissingError(INSTALL_HINT) from error
    return onnxruntime


def _probe_graph() -> bytes:
    """A serialized one-node graph y = x + x on float32 [1, 4] (IR 8: old runtimes read it)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_graph() -> bytes:
    """The one-node ONNX graph the provider probe runs (calibration sizes a session with it)."""
    return _probe_graph()


def explain_failure(text: str) -> str:
    """A short reason from ONNX Runtime's error text (its first line when no phrase is known)."""
    lowered = text.lower()
    for phrase, reason in _FAILURES:
        if phrase in lowered:
            return reason
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:160] or "it did not load"


def probe_provider(name: str, options: dict[str, str] | None = None, ort: Any = None) -> str | None:
    """None when `name` creates a session and runs on its own, else the reason it does not."""
    ort = ort if ort is not None else import_onnxruntime()
    if name == "CPUExecutionProvider":
        return None
    entry: Any = (name, options) if options else name
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # ORT prints "EP Error ..." and falls back
            session = ort.InferenceSession(_probe_graph(), providers=[entry])
            session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    except Exception as error:  # ORT raises its own Fail/RuntimeError types, or OSError
        return explain_failure(f"{error}\n{printed.getvalue()}")
    loaded = list(session.get_providers())
    if not loaded or loaded[0] != name:
        why = explain_failure(printed.getvalue()) if printed.getvalue().strip() else ""
        return why or f"it did not load (ONNX Runtime fell back to {loaded[:1] or 'nothing'})"
    return None


@cache
def probe_once(name: str) -> str | None:
    """`probe_provider` for this process, once per provider."""
    return probe_provider(name)
