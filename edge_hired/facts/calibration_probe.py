"""One measurement of `profile calibrate`, run in a fresh Python process, printed as JSON.

    python -m edge_hired.facts.calibration_probe '{"step": "encoder", "model": DIR, ...}'

Memory figures need a fresh process each: the RSS high-water mark and the allocator's heap of
an earlier measurement would leak into the next. Each memory step first runs the parts it
measures once on a tiny input (so lazily mapped weights and one-time buffers are resident),
hands the freed heap back to the OS, and then measures the peak above that baseline.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_hired.device.contention import read_cpu_pressure, release_free_heap
from edge_hired.device.device_memory import nvml_usage, unified_reading
from edge_hired.device.memory import current_rss_mib, peak_rss_mib, reset_peak_rss
from edge_hired.device.memory_info import MEMINFO

PROMPT = "Describe the image in detail."


def runtime_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Resident memory once the runtime is imported (what every request carries)."""
    import edge_hired.runtime.pipeline  # noqa: F401 - the import is the measurement

    release_free_heap()
    return {"rss_mib": current_rss_mib()}


def _pipeline(spec: dict[str, Any]) -> Any:
    from edge_hired.runtime.sources import load_pipeline

    return load_pipeline(
        spec.get("model"),
        spec.get("bundle"),
        spec.get("device", "cpu"),
        spec.get("dtype"),
        quantization=spec.get("quant") or "none",
    )


def _image(hw: list[int]) -> Any:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _warm(pipeline: Any, pixels: Any) -> float:
    """Run encoder and LLM once on tiny inputs, free the heap; the RSS baseline in MiB."""
    from edge_hired.runtime.synthetic_load import warm_once

    warm_once(pipeline, pixels)
    release_free_heap()
    return current_rss_mib()


def encoder_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak above the warm baseline while the encoder runs on all partitions of the image."""
    pipeline = _pipeline(spec)
    pixels, _ = pipeline.preprocess(_image(spec["hw"]))
    base = _warm(pipeline, pixels)
    reset_peak_rss()
    pipeline.encode(pixels)
    return {"above_mib": peak_rss_mib() - base, "partitions": int(pixels.shape[0])}


def prefill_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak above the warm baseline of a prefill over `tokens` positions and two new tokens."""
    from edge_hired.runtime.synthetic_load import prefill_and_decode, random_embeddings

    pipeline = _pipeline(spec)
    pixels, _ = pipeline.preprocess(_image(spec["hw"]))
    embeds = random_embeddings(pipeline, spec["tokens"])
    base = _warm(pipeline, pixels)
    reset_peak_rss()
    prefill_and_decode(pipeline, embeds, new_tokens=2)
    return {"above_mib": peak_rss_mib() - base, "tokens": spec["tokens"]}


def request_step(spec: dict[str, Any]) -> dict[str, Any]:
    """One whole request at a token count: its peak RSS (weights and runtime included)."""
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import SelectionOptions

    pipeline = _pipeline(spec)
    result = pipeline.run(
        _image(spec["hw"]),
        PROMPT,
        SelectionOptions(tokens=spec["tokens"]),
        SamplingOptions(max_new_tokens=spec["new"]),
    )
    return {
        "peak_mib": result.peak_rss_mib,
        "device_peak_mib": result.device_peak_mib,
        "kept": result.visual_tokens_kept,
        "llm_input_tokens": result.llm_input_tokens,
        "ttft_s": result.ttft_s,
    }


def timing_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Phase times of requests at several token counts and image layouts, interleaved rounds."""
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import SelectionOptions

    pipeline = _pipeline(spec)
    images = {tuple(hw): _image(hw) for hw in spec["layouts"]}
    largest = _image(spec["hw"])
    pressure = [read_cpu_pressure()]
    pipeline.run(largest, PROMPT, SelectionOptions(tokens=1), SamplingOptions(max_new_tokens=2))
    runs: list[dict[str, Any]] = []
    for _ in range(spec["rounds"]):
        for tokens in spec["lengths"]:
            sampling = SamplingOptions(max_new_tokens=spec["new"])
            result = pipeline.run(largest, PROMPT, SelectionOptions(tokens=tokens), sampling)
            runs.append(_timing_row(result))
        for image in images.values():
            sampling = SamplingOptions(max_new_tokens=1)
            result = pipeline.run(image, PROMPT, SelectionOptions(tokens=1), sampling)
            runs.append(_timing_row(result))
    pressure.append(read_cpu_pressure())
    return {"runs": runs, "cpu_pressure_avg10": _pressure(pressure)}


def _timing_row(result: Any) -> dict[str, Any]:
    timings = result.timings_s
    return {
        "partitions": len(result.partition_budgets),
        "llm_input_tokens": result.llm_input_tokens,
        "preprocess_s": timings["preprocess"] + timings["select"],
        "encoder_s": timings["encode"],
        "prefill_s": timings["prefill_to_first_token"],
        "decode_s": timings["decode"],
        "new_tokens": len(result.token_ids),
        "ttft_s": result.ttft_s,
    }


def _pressure(pressure: list[Any]) -> float | None:
    """Mean CPU pressure (PSI 'some' avg10, %) at the start and end (None without PSI)."""
    if None in pressure:
        return None
    return statistics.fmean([pressure[1].avg10, pressure[0].avg10])


@dataclass(frozen=True)
class Usage:
    """Memory in use, read without a CUDA call (so it can be read before CUDA initialises)."""

    own: int | None  # this process's, where NVML lists it
    total: int  # all in use: NVML's device figure, or MemTotal - MemAvailable on a Jetson
    source: str


def read_usage(kind: str, meminfo: Path = MEMINFO, nvml: Any = None) -> Usage | None:
    """'unified' (Jetson): MemTotal - MemAvailable, since cudaMemGetInfo there is MemFree and
    would charge the desktop and page cache again; 'discrete': NVML. None without NVML."""
    if kind == "unified":
        return Usage(None, unified_reading(meminfo).bytes, "MemAvailable in /proc/meminfo")
    usage = nvml_usage(nvml)
    if usage is None:
        return None
    return Usage(usage.own, usage.device_used, "NVML device memory used")


def grown(before: Usage, after: Usage) -> tuple[int, str]:
    """Bytes that appeared between two readings, and by which figure."""
    if after.own is not None:
        return after.own - (before.own or 0), "NVML per-process memory"
    return after.total - before.total, after.source


class TorchCuda:
    """The CUDA calls the context measurement makes, through torch."""

    def available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def start(self) -> None:
        """Create the context (and torch's first 2 MiB block), and wait for it."""
        import torch

        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()

    def used(self) -> int:
        """The device's memory in use, every process's (cudaMemGetInfo)."""
        import torch

        free, total = torch.cuda.mem_get_info()
        return int(total - free)

    def reserved(self) -> int:
        """What torch's allocator holds: not the context's."""
        import torch

        return int(torch.cuda.memory_reserved())


def cuda_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Device memory the CUDA context takes, and an ONNX Runtime CUDA session on top of it."""
    return measure_cuda(spec.get("kind", "discrete"), TorchCuda(), MEMINFO)


def measure_cuda(kind: str, cuda: Any, meminfo: Path = MEMINFO, nvml: Any = None) -> dict:
    """The context against a reading taken BEFORE CUDA initialises (the first cudaMemGetInfo
    would already create it), less torch's own allocation; then an ORT session likewise."""
    before = read_usage(kind, meminfo, nvml)
    if not cuda.available():
        return {"skipped": "no CUDA device visible to torch"}
    cuda.start()
    if before is None:  # no NVML: no baseline; everything in use counts (an upper bound)
        why = "cudaMemGetInfo used after CUDA initialised, all processes (no NVML for a baseline)"
        return {"context_mib": cuda.used() / 2**20, "context_source": why, "ort_mib": None}
    after = read_usage(kind, meminfo, nvml)
    context, source = grown(before, after)
    context -= cuda.reserved()
    return {
        "context_mib": context / 2**20,
        "context_source": f"{source}, before and after CUDA initialised, less torch's reserved",
        "ort_mib": _ort_session_mib(kind, meminfo, nvml),
    }


def _ort_session_mib(kind: str, meminfo: Path, nvml: Any) -> float | None:
    """Memory one ONNX Runtime CUDA session adds (None without a CUDA build of onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    from edge_hired.device.ort_providers import probe_graph

    before = read_usage(kind, meminfo, nvml)
    session = ort.InferenceSession(probe_graph(), providers=["CUDAExecutionProvider"])
    after = read_usage(kind, meminfo, nvml)
    del session
    return grown(before, after)[0] / 2**20


STEPS = {
    "runtime": runtime_step,
    "encoder": encoder_step,
    "prefill": prefill_step,
    "request": request_step,
    "timing": timing_step,
    "cuda": cuda_step,
}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    print(json.dumps(STEPS[spec["step"]](spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
