"""One benchmark request: run it through the pipeline and record every figure it yields.

How each figure is measured:
- TTFT: request start (before the image file is read) to the first generated token, from the
  pipeline's own marks. Every mark waits for the device's queued work first (`DeviceClock`), so
  encode, select and prefill are true on CUDA too; `synchronize` drains queued work before a
  request starts and after it ends (end-to-end latency, CUDA peak memory).
- Peak memory, decided once with a reason (`choose_memory_source`): a Jetson's RAM in use (jtop,
  system-wide, unified memory); on CUDA the device-level peak (`device_peak_mib`: NVML's
  per-process figure, which counts the CUDA context and ONNX Runtime's arena that
  `torch.cuda.max_memory_allocated` misses; that one stays as `cuda_peak_mib`);
  else the process's peak RSS (VmHWM, reset per request, resident weights included). Freed heap
  memory is handed back to the OS before each request so one request's peak does not carry the
  last one's.
- Energy: the telemetry's total power rail integrated over the request (added afterwards, from
  the phase marks this module forwards to the recorder; empty without power).
- CPU contention: `/proc/pressure/cpu` "some" around each run: avg10 after it, and the share of
  the run's wall time during which some task (ours or another's) waited for a CPU (from the
  `total` counter); and `process_cores`, this process's CPU time over the run's wall time (about
  the thread count on a quiet machine, less when others take the cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from edge_hired.bench.options import BenchOptions, ProfilePlan, Slot
from edge_hired.device.contention import (
    cuda_peak_mib,
    read_cpu_pressure,
    release_free_heap,
    reset_cuda_peak,
    stall_pct,
    synchronize,
)
from edge_hired.device.memory import current_rss_mib
from edge_hired.device.telemetry.base import Sampler
from edge_hired.device.telemetry.recorder import TelemetryRecorder
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.sweep import FULL

#: Record keys from the pipeline's `timings_s`.
TIMINGS = {
    "preprocess_s": "preprocess",
    "encode_s": "encode",
    "select_s": "select",
    "prefill_s": "prefill_to_first_token",
    "decode_s": "decode",
}


@dataclass(frozen=True)
class MemorySource:
    """Which memory figure is "peak memory" on this device, and why."""

    key: str
    reason: str


def choose_memory_source(device: torch.device, sampler: Sampler | None) -> MemorySource:
    """A Jetson's RAM in use (unified memory), else CUDA's allocator peak, else the RSS peak."""
    if sampler is not None and sampler.name == "jtop":
        return MemorySource("telemetry_peak_mib", "jtop ram_used_mib: unified RAM in use")
    if device.type == "cuda":
        return MemorySource(
            "device_peak_mib",
            "device-level per request (NVML per-process, else cudaMemGetInfo; CUDA context "
            "and ONNX Runtime's arena included)",
        )
    return MemorySource("peak_rss_mib", "process peak RSS (VmHWM) per request, weights included")


@dataclass
class RequestContext:
    """What every request of one benchmark shares."""

    pipeline: Pipeline
    options: BenchOptions
    sampling: SamplingOptions
    memory: MemorySource
    recorder: TelemetryRecorder | None = None
    profile: ProfilePlan = field(default_factory=ProfilePlan)  # planned token cap per image

    def selection(self, slot: Slot) -> SelectionOptions:
        """The slot's selection options, held to its image's planned cap."""
        return slot.setting.selection(self.options.seed, self.profile.cap_for(slot.image))


def measure_request(ctx: RequestContext, slot: Slot, order: int) -> dict[str, Any]:
    """Run one request and return its record (figures from the pipeline, telemetry and PSI)."""
    device = ctx.pipeline.device
    release_free_heap()
    synchronize(device)
    reset_cuda_peak(device)
    rss_before, before = current_rss_mib(), read_cpu_pressure()
    prefix = f"{order}:"
    cpu_start, start = time.process_time(), time.perf_counter()
    result = ctx.pipeline.run(
        slot.image,
        ctx.options.prompt,
        ctx.selection(slot),
        ctx.sampling,
        on_phase=_phase_forwarder(ctx.recorder, prefix),
    )
    synchronize(device)
    e2e = time.perf_counter() - start
    cores = (time.process_time() - cpu_start) / e2e
    after = read_cpu_pressure()
    record = {
        "order": order,
        "round": slot.round,
        "image": slot.image.name,
        "setting": slot.setting.label,
        "strategy": slot.setting.strategy,
        "budget_label": slot.setting.budget_label,
        "budget": slot.setting.ratio,
        "profile_cap_tokens": ctx.profile.caps.get(slot.image),
        "visual_tokens_total": result.visual_tokens_total,
        "visual_tokens_kept": result.visual_tokens_kept,
        "kept_share": result.visual_tokens_kept / max(result.visual_tokens_total, 1),
        "llm_input_tokens": result.llm_input_tokens,
        "new_tokens": len(result.token_ids),
        "ttft_s": result.ttft_s,
        **{key: result.timings_s[name] for key, name in TIMINGS.items()},
        "decode_tokens_per_s": result.decode_tokens_per_s,
        "e2e_s": e2e,
        "peak_rss_mib": result.peak_rss_mib,
        "rss_before_mib": rss_before,
        "cuda_peak_mib": cuda_peak_mib(device),
        "device_peak_mib": result.device_peak_mib,
        "cpu_some_avg10": None if after is None else after.avg10,
        "cpu_stall_pct": stall_pct(before, after, e2e),
        "process_cores": cores,
        "telemetry_prefix": prefix if ctx.recorder else None,
    }
    if slot.setting.strategy == FULL:
        record["budget"] = 1.0
    return record


def _phase_forwarder(recorder: TelemetryRecorder | None, prefix: str) -> Callable | None:
    """Pass the pipeline's phase marks to the recorder, named '<order>:<phase>'."""
    if recorder is None:
        return None

    def forward(name: str | None, at: float) -> None:
        recorder.mark(None if name is None else prefix + name, at)

    return forward


def warm_up(ctx: RequestContext, slot: Slot) -> None:
    """Run one request and record nothing."""
    ctx.pipeline.run(slot.image, ctx.options.prompt, ctx.selection(slot), ctx.sampling)


class FixedLength:
    """While open, the LLM generates exactly max_new_tokens (its generation_config's minimum)."""

    def __init__(self, config: Any, tokens: int | None) -> None:
        self.config = config  # the LLM's generation config (None: nothing to hold)
        self.tokens = tokens

    def __enter__(self) -> None:
        if self.config is not None and self.tokens is not None:
            self.saved = self.config.min_new_tokens
            self.config.min_new_tokens = self.tokens

    def __exit__(self, *exc: object) -> None:
        if self.config is not None and self.tokens is not None:
            self.config.min_new_tokens = self.saved
