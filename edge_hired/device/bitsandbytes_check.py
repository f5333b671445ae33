"""Can bitsandbytes run its 4-bit / 8-bit kernels on this device? Decided once, by trying.

A wheel that imports is not a wheel that works: PyPI's aarch64 bitsandbytes imports on a Jetson
and then fails at the first 4-bit kernel ("named symbol not found"). So `require_bitsandbytes`
quantizes one small Linear layer on the device, runs a forward pass on a few numbers and compares
it with the full-precision result. Any failure becomes a `BackendUnavailableError` whose one-line
message says what failed and what to do. The verdict is cached per (quantization, device).

The import and the smoke test are parameters with defaults, so tests can simulate a broken wheel
without touching globals.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from types import ModuleType

import torch

from edge_hired.device.jetson import looks_like_jetson
from edge_hired.errors import EdgeHiredError
from edge_hired.units import check_quantization

#: Relative error (|y - y_ref| / |y_ref|) the smoke test accepts: NF4 gives ~0.09 on Gaussian
#: weights, LLM.int8 ~0.007; a broken kernel gives garbage (~1) or NaN.
SMOKE_TOLERANCE = {"4bit": 0.25, "8bit": 0.05}

# Logged by bitsandbytes' CPU backend at import when the optional `kernels` package is absent;
# the built-in CPU kernels are used instead, so it is noise.
_HARMLESS_PREFIX = "Failed to load CPU gemm_4bit_forward from kernels-community"
_CPU_OPS_LOGGER = "bitsandbytes.backends.cpu.ops"

Importer = Callable[[], ModuleType]
SmokeTest = Callable[[ModuleType, str, torch.device], None]


class BackendUnavailableError(EdgeHiredError):
    """bitsandbytes cannot run the kernels a quantized model needs on this device."""


class _DropHarmless(logging.Filter):
    """Drops the kernels-community warning, lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_HARMLESS_PREFIX)


def silence_harmless_warnings() -> None:
    """Install (once) the filter that hides bitsandbytes' kernels-community warning."""
    logger = logging.getLogger(_CPU_OPS_LOGGER)
    if not any(isinstance(f, _DropHarmless) for f in logger.filters):
        logger.addFilter(_DropHarmless())


def import_bitsandbytes() -> ModuleType:
    """Import bitsandbytes quietly (the kernels-community notice and import-time deprecations)."""
    silence_harmless_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bitsandbytes

    return bitsandbytes


def _quantized_linear(bnb: ModuleType, quantization: str, weight: torch.Tensor) -> torch.nn.Module:
    """A bitsandbytes Linear holding `weight` [out, in], not yet quantized (that happens in .to)."""
    out_features, in_features = weight.shape
    if quantization == "4bit":
        layer = bnb.nn.Linear4bit(
            in_features, out_features, bias=False, compute_dtype=torch.float16, quant_type="nf4"
        )
        layer.weight = bnb.nn.Params4bit(weight.half(), requires_grad=False, quant_type="nf4")
        return layer
    layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=False, has_fp16_weights=False)
    layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=False, has_fp16_weights=False)
    return layer


def smoke_test(bnb: ModuleType, quantization: str, device: torch.device) -> None:
    """Quantize a 64x128 Linear on `device`, run it, compare with fp32; raise on any mismatch."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 128, generator=generator) * 0.05
    inputs = torch.randn(4, 128, generator=generator)
    reference = inputs @ weight.T
    with torch.inference_mode():
        layer = _quantized_linear(bnb, quantization, weight).to(device)
        result = layer(inputs.to(device, torch.float16)).float().cpu()
    error = float((result - reference).norm() / reference.norm())
    if not error <= SMOKE_TOLERANCE[quantization]:  # also catches NaN
        raise RuntimeError(
            f"{quantization} Linear output is wrong: relative error {error:.3g} > "
            f"{SMOKE_TOLERANCE[quantization]}"
        )


#: Phrases that identify a kernel/driver mismatch even when they sit below an error's first line.
_SIGNATURES = (
    "named symbol not found",
    "no kernel image is available",
    "undefined symbol",
    "driver version is insufficient",
)


def _first_line(error: BaseException) -> str:
    """The exception's type and first line, plus a known signature phrase found further down."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    extra = [s for s in _SIGNATURES if s in text.lower() and s not in first.lower()]
    summary = " ... ".join([first, *extra]) if first else " ... ".join(extra)
    return f"{type(error).__name__}: {summary}" if summary else type(error).__name__


#: The build that works on Jetson Orin (sm_87), from bitsandbytes#1218 (`make -j4`: more jobs run
#: out of memory on an 8 GB board), or the wheel of NVIDIA's Jetson index (bitsandbytes#1930).
JETSON_FIX = (
    "PyPI's aarch64 bitsandbytes has no Jetson kernels: pip install --force-reinstall "
    '--index-url "$JETSON_PIP_INDEX" bitsandbytes (NVIDIA\'s Jetson AI Lab index), or build '
    "it for sm_87: git clone https://github.com/bitsandbytes-foundation/bitsandbytes && "
    "cd bitsandbytes && cmake -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=87 -S . && "
    "make -j4 && pip install ."
)
#: Error text that means "a wheel without this GPU's kernels" (Jetson's symptom).
_MISSING_KERNELS = "named symbol not found"


def _advice(quantization: str, jetson: bool, error_text: str = "") -> str:
    if _MISSING_KERNELS in error_text.lower():
        return (
            f"to fix: {JETSON_FIX}; or export with --quant none instead of --quant {quantization}"
        )
    if jetson:
        fix = (
            "build bitsandbytes from source for your JetPack (CUDA) or install it from "
            "NVIDIA's Jetson wheel index (PyPI's aarch64 wheels lack Jetson kernels)"
        )
    else:
        fix = (
            "reinstall a bitsandbytes built for this torch and CUDA "
            "(`python -m bitsandbytes` prints a diagnosis)"
        )
    return f"to fix: {fix}; or export with --quant none instead of --quant {quantization}"


def _failure(
    quantization: str, device: torch.device, stage: str, error: BaseException, jetson: bool
) -> tuple[str, BaseException]:
    """The one-line message for a failed stage, and the exception it came from."""
    message = (
        f"bitsandbytes {quantization} on {device}: {stage} failed "
        f"({_first_line(error)}); {_advice(quantization, jetson, str(error))}"
    )
    return " ".join(message.split()), error


#: (quantization, device, importer, smoke, jetson) -> None (works) or (message, cause).
_VERDICTS: dict[tuple, tuple[str, BaseException] | None] = {}


def clear_cache() -> None:
    """Forget cached verdicts (after reinstalling bitsandbytes in the same process, or in tests)."""
    _VERDICTS.clear()


def _check(
    quantization: str, device: torch.device, importer: Importer, smoke: SmokeTest, jetson: bool
) -> tuple[str, BaseException] | None:
    """None when the kernels work, else the message to raise and its cause."""
    try:
        bnb = importer()
    except Exception as error:  # a broken wheel can raise anything: ImportError, OSError, ...
        return _failure(quantization, device, "import", error, jetson)
    try:
        smoke(bnb, quantization, device)
    except Exception as error:
        return _failure(quantization, device, "the kernel smoke test", error, jetson)
    return None


def require_bitsandbytes(
    quantization: str,
    device: torch.device | str,
    *,
    importer: Importer = import_bitsandbytes,
    smoke: SmokeTest = smoke_test,
    jetson: bool | None = None,
) -> None:
    """Return if bitsandbytes runs `quantization` ("4bit"/"8bit") on `device`; "none" always passes.

    Raises BackendUnavailableError (one line: what failed, what to do) otherwise. The verdict is
    cached per (quantization, device) and the injected importer / smoke test / `jetson` (which
    picks the advice; None detects it).
    """
    if check_quantization(quantization) == "none":
        return
    device = _normalise(torch.device(device))
    on_jetson = looks_like_jetson() if jetson is None else jetson
    key = (quantization, str(device), importer, smoke, on_jetson)
    if key not in _VERDICTS:
        _VERDICTS[key] = _check(quantization, device, importer, smoke, on_jetson)
    verdict = _VERDICTS[key]
    if verdict is not None:
        message, cause = verdict
        raise BackendUnavailableError(message) from cause


def _normalise(device: torch.device) -> torch.device:
    """'cuda' and 'cuda:0' are the same device for caching and messages."""
    if device.type != "cpu" and device.index is None:
        return torch.device(device.type, 0)
    return device
