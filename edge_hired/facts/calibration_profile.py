"""The profile `profile calibrate` writes: its data, and the comment that goes with each figure.

Memory is read live (MemAvailable) on a CPU or a Jetson, where it already leaves out the OS and
any desktop, and fixed to the measured total on a discrete GPU. Peak figures for the roofline
estimates are not measured: they are copied from the base profile (the detected Jetson's, else
`cpu`) and say so. The runtime section records the settings the measurements ran with.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edge_hired.profile_calibration import CalibrationSpec
from edge_hired.profiles import load_profile
from edge_hired.units import normal_dtype

if TYPE_CHECKING:
    from edge_hired.facts.run_facts import RunFacts


def base_profile_name() -> str:
    """The profile whose datasheet figures a calibrated one copies: this Jetson's, else cpu."""
    from edge_hired.device.jetson import detect_jetson

    return detect_jetson().profile or "cpu"


def profile_data(name: str, facts: RunFacts, spec: CalibrationSpec) -> dict[str, Any]:
    """The whole profile as plain data, in the schema of `profiles/`."""
    base = load_profile(base_profile_name())
    dtype = normal_dtype(facts.inputs.compute_dtype)
    return {
        "name": name,
        "description": f"calibrated on {spec.host} with {spec.model}",
        "memory": _memory(facts.device == "cuda" and _discrete(), spec),
        "performance": asdict(base.performance),
        "runtime": {
            "device": facts.device,
            "providers": list(base.runtime.providers),
            "quantization": facts.inputs.quantization,
            "compute_dtype": dtype,
            "kv_cache_dtype": normal_dtype(facts.inputs.kv_dtype),
            **({"bf16": base.runtime.bf16} if base.runtime.bf16 is not None else {}),
        },
        "calibration": _calibration_data(spec),
    }


def _discrete() -> bool:
    from edge_hired.device.jetson import detect_jetson

    return not detect_jetson().is_jetson


def _memory(discrete: bool, spec: CalibrationSpec) -> dict[str, Any]:
    shared = {"os_gib": 0.0, "desktop": False, "desktop_gib": 0.0}
    context = spec.cuda_context_gib or 0.0
    if discrete:
        return {"source": "fixed", "total_gib": spec.total_gib, "unified": False, **shared,
                "cuda_context_gib": context}  # fmt: skip
    return {"source": "meminfo", "unified": True, **shared, "cuda_context_gib": context}


def _calibration_data(spec: CalibrationSpec) -> dict[str, Any]:
    """The section without unset keys (TOML has no null), the peak checks as tables."""
    data = {key: value for key, value in asdict(spec).items() if value is not None}
    data["peak_check"] = [asdict(check) for check in spec.peak_check]
    if not data["peak_check"]:
        del data["peak_check"]
    return data


def profile_comments(spec: CalibrationSpec, measured: dict[str, Any]) -> dict[str, str]:
    """What each measured figure is, when, how and on what it was measured."""
    when = f"measured {spec.measured_at} on {spec.host}"
    timing = measured.get("timing", {})
    pressure = timing.get("cpu_pressure_avg10")
    contended = "" if pressure is None else f"; CPU pressure avg10 {pressure:.0f}% meanwhile"
    cuda = measured.get("cuda", {})
    return {
        "": f"Written by `edge-hired profile calibrate` ({when}).\n"
        "Every figure of [calibration] was measured on this machine; [performance] was not.\n"
        "Units: memory in GiB (2^30 bytes) unless the key says MiB/KiB; times in seconds.",
        "memory": "MemAvailable is read when a plan is made (it leaves out the OS and desktop);\n"
        "on a discrete GPU the measured total is fixed here.",
        "memory.cuda_context_gib": _cuda_note(cuda),
        "performance": f"Copied from profiles/{base_profile_name()}.toml (datasheet figures, "
        "not measured):\nused only for roofline estimates of models this file was not "
        "calibrated with.",
        "runtime": "The settings the measurements ran with.",
        "calibration": f"{when}, model {spec.model}{contended}.\n"
        "Activation peaks and timings hold for that model only (model_key); fixed costs hold "
        "for any.",
        "calibration.total_gib": "MemTotal (or the GPU's total), read from /proc/meminfo "
        "(cudaMemGetInfo on a discrete GPU)",
        "calibration.available_gib": "MemAvailable (free GPU memory) when calibrated",
        "calibration.runtime_gib": "VmRSS of a fresh process after importing torch, "
        "transformers and edge-hired's runtime",
        "calibration.encoder_activation_mib_per_partition": "peak RSS above a warmed baseline "
        "while the encoder ran the largest layout, fresh process, / partitions",
        "calibration.prefill_activation_kib_per_token": "slope of the prefill's peak (fresh "
        "processes, 64 and all visual+prompt tokens) minus the KV cache per token",
        "calibration.preprocess_s": "a + b*partitions: image processor + selection, median "
        "of interleaved rounds, least squares over the layouts",
        "calibration.encoder_s": "a + b*partitions: the vision encoder, as above",
        "calibration.prefill_s": "a + b*n + c*n^2, n = LLM input tokens: projector, embedding "
        "and prefill to the first token, least squares over >= 4 lengths",
        "calibration.decode_s_per_token": "a + b*context: decode time per token after the "
        "first, least squares over the same runs",
        "calibration.first_request_extra_s": "median over the peak checks of a fresh process's "
        "first-request TTFT minus the warm fits' prediction (weights paged in, kernels built)",
        "calibration.peak_check": "the planner's predicted peak with this file against a whole "
        "request in a fresh process (peak RSS; device peak on a GPU)",
    }


def _cuda_note(cuda: dict[str, Any]) -> str:
    if "skipped" in cuda:
        return f"not measured: {cuda['skipped']} (0: no CUDA context on this device)"
    return f"measured in a fresh process: {cuda['context_source']}"
