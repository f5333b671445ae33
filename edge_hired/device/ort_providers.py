"""ONNX Runtime as the bundle runtime meets it: import it, and prove a provider loads by trying.

`get_available_providers()` is the list the wheel was compiled with, not what loads: with
libnvinfer missing, or a wheel built without this GPU's architecture, TensorRT and CUDA are
still listed and fail at session creation or at the first run (where ONNX Runtime's Python
layer prints "EP Error ..." and silently falls back to the CPU). `probe_provider` builds a
one-node graph, runs it on the provider alone and returns why it failed, or None.

ONNX Runtime's C++ logger writes the real cause ("libcublasLt.so.12: cannot open shared object
file") to file descriptor 2, not to Python's `sys.stderr`, so the probe captures that
descriptor itself. The commonest cause on a GPU machine is an onnxruntime-gpu built for another
CUDA major than torch's (onnxruntime#27944): the probe says so when the two differ.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
#: "<library>.so.<n>: cannot open shared object file", as the dynamic loader words it.
_MISSING_LIBRARY = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


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
    """A short reason from ONNX Runtime's error text: the missing library with the loader's
    words, a known phrase, or the text's first line."""
    missing = _MISSING_LIBRARY.search(text)
    if missing:
        line = next(line for line in text.splitlines() if missing.group(0) in line)
        start = line.find("Failed to load")
        return f"{missing.group(1)} not found ({line[max(start, 0) :].strip()[:200]})"
    lowered = text.lower()
    for phrase, reason in _FAILURES:
        if phrase in lowered:
            return reason
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:160] or "it did not load"


@dataclass
class Captured:
    """What a file descriptor received inside `capture_fd` (filled in when the block ends)."""

    text: str = ""


@contextlib.contextmanager
def capture_fd(fd: int = 2) -> Iterator[Captured]:
    """Everything written to descriptor `fd` meanwhile, by Python or by C++ alike."""
    captured = Captured()
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (a daemon without stderr): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        _flush_std()
        os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            _flush_std()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a replaced stream may not flush
            stream.flush()


def probe_provider(name: str, options: dict[str, str] | None = None, ort: Any = None) -> str | None:
    """None when `name` creates a session and runs on its own, else the reason it does not."""
    ort = ort if ort is not None else import_onnxruntime()
    if name == "CPUExecutionProvider":
        return None
    why = _try_session(ort, (name, options) if options else name, name)
    if why is not None and name in GPU_PROVIDERS:
        mismatch = cuda_major_mismatch(onnxruntime_cuda_version(), torch_cuda_version())
        return f"{why}; {mismatch}" if mismatch else why
    return why


def _try_session(ort: Any, entry: Any, name: str) -> str | None:
    """Create and run the probe session; why it failed or fell back, from everything printed."""
    printed = io.StringIO()
    try:
        with capture_fd(2) as logged, contextlib.redirect_stdout(printed):
            session = ort.InferenceSession(_probe_graph(), providers=[entry])
            session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    except Exception as error:  # ORT raises its own Fail/RuntimeError types, or OSError
        return explain_failure(f"{error}\n{logged.text}\n{printed.getvalue()}")
    loaded = list(session.get_providers())
    if loaded and loaded[0] == name:
        return None
    said = f"{logged.text}\n{printed.getvalue()}"
    why = explain_failure(said) if said.strip() else ""
    return why or f"it did not load (ONNX Runtime fell back to {loaded[:1] or 'nothing'})"


def onnxruntime_cuda_version(info: Any = None) -> str | None:
    """The CUDA version the installed onnxruntime was built for; None for a build without CUDA.

    GPU wheels record it in `onnxruntime.capi.build_and_package_info.cuda_version`.
    """
    if info is None:
        try:
            from onnxruntime.capi import build_and_package_info as info
        except ImportError:
            return None
    return getattr(info, "cuda_version", None) or None


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built for; None for a CPU build or without torch."""
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda or None


def cuda_major_mismatch(ort_cuda: str | None, torch_cuda: str | None) -> str | None:
    """One line when onnxruntime-gpu and torch were built for different CUDA majors, else None.

    Each loads its own CUDA libraries of its major (libcublasLt.so.<major>); a pair of majors
    needs both sets installed, and usually only torch's is.
    """
    if not ort_cuda or not torch_cuda:
        return None
    ort_major, torch_major = ort_cuda.split(".")[0], torch_cuda.split(".")[0]
    if ort_major == torch_major:
        return None
    return (
        f"onnxruntime-gpu is built for CUDA {ort_cuda} and torch for CUDA {torch_cuda}: install "
        f"the onnxruntime-gpu built for CUDA {torch_major}"
    )


@cache
def probe_once(name: str) -> str | None:
    """`probe_provider` for this process, once per provider."""
    return probe_provider(name)
