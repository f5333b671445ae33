"""Choose ONNX Runtime execution providers once, with a reason the user sees.

Preference: TensorRT > CUDA > CPU, among the providers this onnxruntime build offers. An
explicit list (`--providers`) is honoured as given, or refused if the build lacks one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_hired.errors import InvalidArgumentError, expected

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT_NAMES = {
    "tensorrt": PREFERENCE[0],
    "trt": PREFERENCE[0],
    "cuda": PREFERENCE[1],
    "cpu": PREFERENCE[2],
}


@dataclass(frozen=True)
class ProviderChoice:
    """Providers in priority order and why."""

    providers: tuple[str, ...]
    reason: str


def available_providers() -> list[str]:
    """What the installed onnxruntime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(
    requested: list[str] | None = None, available: list[str] | None = None
) -> ProviderChoice:
    """The providers to use: the requested ones if all exist, else the best available."""
    offered = available if available is not None else available_providers()
    if requested:
        wanted = tuple(SHORT_NAMES.get(name.lower(), name) for name in requested)
        missing = [name for name in wanted if name not in offered]
        if missing:
            raise InvalidArgumentError(expected("ONNX Runtime providers", offered, missing))
        return ProviderChoice(wanted, f"{wanted[0]}: requested with --providers")
    chosen = tuple(name for name in PREFERENCE if name in offered) or tuple(offered[:1])
    return ProviderChoice(chosen, _why(chosen[0], offered))


def _why(first: str, offered: list[str]) -> str:
    """One line on why `first` leads the list."""
    skipped = (
        [
            name.replace("ExecutionProvider", "")
            for name in PREFERENCE[: PREFERENCE.index(first)]
            if name not in offered
        ]
        if first in PREFERENCE
        else []
    )
    if not skipped:
        return f"{first}: the fastest provider this onnxruntime build offers"
    return f"{first}: {' and '.join(skipped)} not available in this onnxruntime build"
