"""Choose ONNX Runtime execution providers once, with a reason the user sees.

Preference: TensorRT > CUDA > CPU, among the providers this onnxruntime build offers. An
explicit list (`--providers`) is honoured as given, or refused if the build lacks one of them.
The build's list is not proof that a provider loads, so the first choice is probed with a tiny
session (`ort_providers.probe_provider`) and, when it fails, the next one is taken and the
reason printed ("TensorRT listed but libnvinfer not found: CUDAExecutionProvider").

`session_entries` turns the choice into what `InferenceSession(providers=...)` takes. The CUDA
provider (leading, or TensorRT's fallback) gets its arena set explicitly: by default it grows
by powers of two, has no limit and never hands memory back (onnxruntime#14957), so the encoder's
peak would stay held next to the LLM's beyond what the planner counted. `kSameAsRequested` grows
by what is asked and `gpu_mem_limit` (the planner's `ort_gpu_mem_limit`) caps it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_hired.device.ort_providers import import_onnxruntime, probe_once
from edge_hired.errors import InvalidArgumentError, expected

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT_NAMES = {
    "tensorrt": PREFERENCE[0],
    "trt": PREFERENCE[0],
    "cuda": PREFERENCE[1],
    "cpu": PREFERENCE[2],
}


#: A provider as `InferenceSession(providers=...)` takes it: a name, or (name, options).
ProviderEntry = str | tuple[str, dict[str, str]]


@dataclass(frozen=True)
class ProviderChoice:
    """Providers in priority order and why."""

    providers: tuple[str, ...]
    reason: str


def available_providers() -> list[str]:
    """What the installed onnxruntime build offers (one line naming the package if none)."""
    return list(import_onnxruntime().get_available_providers())


def choose_providers(
    requested: list[str] | None = None,
    available: list[str] | None = None,
    probe: Callable[[str], str | None] | None = None,
) -> ProviderChoice:
    """The providers to use: the requested ones if all exist, else the best available.

    The leading provider must pass `probe` (None: it loads and runs; else why not); one that
    fails is dropped and the next leads, with the reason in `ProviderChoice.reason`.
    """
    offered = available if available is not None else available_providers()
    probe = probe or probe_once
    if requested:
        wanted = tuple(SHORT_NAMES.get(name.lower(), name) for name in requested)
        missing = [name for name in wanted if name not in offered]
        if missing:
            raise InvalidArgumentError(expected("ONNX Runtime providers", offered, missing))
        return _probed(wanted, f"{wanted[0]}: requested with --providers", probe)
    chosen = tuple(name for name in PREFERENCE if name in offered) or tuple(offered[:1])
    return _probed(chosen, _why(chosen[0], offered), probe)


def leading_provider(
    requested: Sequence[str] | None = None, available: list[str] | None = None
) -> str:
    """The provider a session would lead with, before any is loaded (no probe): the first
    requested one, else the most preferred that the build offers. Plans made before loading
    use it to tell whether ONNX Runtime's GPU arena will be held."""
    if requested:
        return SHORT_NAMES.get(requested[0].lower(), requested[0])
    offered = available if available is not None else available_providers()
    return next((name for name in PREFERENCE if name in offered), PREFERENCE[-1])


def _probed(
    chosen: tuple[str, ...], reason: str, probe: Callable[[str], str | None]
) -> ProviderChoice:
    """Drop leading providers that fail their probe; say why each was dropped."""
    failures: list[str] = []
    for start, name in enumerate(chosen):
        why = probe(name)
        if why is None:
            if not failures:
                return ProviderChoice(chosen, reason)
            return ProviderChoice(chosen[start:], f"{'; '.join(failures)}: {name}")
        failures.append(f"{_short(name)} listed but {why}")
    raise InvalidArgumentError(
        expected("ONNX Runtime providers", f"one that loads of {', '.join(chosen)}", failures)
    )


def _short(name: str) -> str:
    """'TensorRT' for TensorrtExecutionProvider, as people write it."""
    return {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA"}.get(
        name, name.replace("ExecutionProvider", "")
    )


def _why(first: str, offered: list[str]) -> str:
    """One line on why `first` leads the list."""
    skipped = (
        [_short(name) for name in PREFERENCE[: PREFERENCE.index(first)] if name not in offered]
        if first in PREFERENCE
        else []
    )
    if not skipped:
        return f"{first}: the fastest provider this onnxruntime build offers"
    return f"{first}: {' and '.join(skipped)} not available in this onnxruntime build"


def cuda_arena_options(gpu_mem_limit: int) -> dict[str, str]:
    """CUDA provider options: an arena that grows by what is requested, up to the limit."""
    if gpu_mem_limit < 1:
        raise InvalidArgumentError(expected("gpu_mem_limit", "bytes >= 1", gpu_mem_limit))
    return {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(int(gpu_mem_limit))}


def session_entries(
    providers: Sequence[str],
    gpu_mem_limit: int | None,
    tensorrt_options: dict[str, str] | None = None,
) -> list[ProviderEntry]:
    """The providers with their options: CUDA's arena (when a limit is given) and TensorRT's
    cache/profile options."""
    entries: list[ProviderEntry] = []
    for name in providers:
        if name == "CUDAExecutionProvider" and gpu_mem_limit is not None:
            entries.append((name, cuda_arena_options(gpu_mem_limit)))
        elif name == "TensorrtExecutionProvider" and tensorrt_options:
            entries.append((name, dict(tensorrt_options)))
        else:
            entries.append(name)
    return entries
