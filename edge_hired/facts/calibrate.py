"""`profile calibrate`: measure this device with one model and write a profile from it.

Each memory figure comes from a fresh process (`calibration_probe`); the timings from one process
that runs interleaved rounds of requests at several visual-token counts and image layouts. The
fits (`planner.fits`) and measured costs become the profile's `[calibration]` section; the
planner's prediction with that section is then checked against whole requests at two budgets,
and the check is written into the file too.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected
from edge_hired.facts.calibration_fits import fit_timings, prefill_kib_per_token
from edge_hired.facts.calibration_profile import profile_comments, profile_data
from edge_hired.facts.profile_toml import write_profile
from edge_hired.facts.run_facts import RunFacts, bundle_run_facts, run_facts, run_request
from edge_hired.planner.arithmetic import predicted_peak_bytes
from edge_hired.planner.measured import model_key
from edge_hired.planner.shapes import image_geometry
from edge_hired.planner.ttft import predict_ttft
from edge_hired.profile_calibration import CalibrationSpec, PeakCheck
from edge_hired.profiles import DeviceProfile, profile_from_dict
from edge_hired.units import GIB, MIB

#: Shares of the largest layout's visual tokens timed for the prefill fit (>= 4 lengths).
LENGTH_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Budgets whose whole-request peak is checked against the calibrated prediction.
CHECK_SHARES = (1.0, 0.2)
NEW_TOKENS = 4
PROBE_TIMEOUT_S = 1800


class CalibrationError(EdgeHiredError):
    """A measurement process failed."""


@dataclass(frozen=True)
class CalibrateOptions:
    """What to measure with, and where to write the profile."""

    out: Path
    model: str | None = None
    bundle: str | None = None
    name: str | None = None
    device: str = "auto"
    dtype: str | None = None
    quant: str = "none"
    rounds: int = 2
    progress: bool = True


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement step in a fresh Python process; its JSON result."""
    argv = [sys.executable, "-m", "edge_hired.facts.calibration_probe", json.dumps(spec)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CalibrationError(f"calibration step {spec['step']}: failed ({tail[0]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _facts(options: CalibrateOptions, hw: tuple[int, int]) -> RunFacts:
    from edge_hired.facts.calibration_probe import PROMPT

    if options.bundle:
        return bundle_run_facts(options.bundle, hw, PROMPT, options.device)
    quant = options.quant
    return run_facts(options.model, hw, PROMPT, options.device, options.dtype, quantization=quant)


def layouts(facts: RunFacts) -> list[tuple[int, int]]:
    """One image size per distinct partition count of the model's layouts, largest last."""
    vision = facts.inputs.vision
    sizes = list(vision.pinpoints) or [(vision.crop_size, vision.crop_size)]
    by_count: dict[tuple[int, int], tuple[int, int]] = {}
    for hw in sizes:
        geometry = image_geometry(vision, hw)
        key = (geometry.num_partitions, int(geometry.valid_counts().sum()))
        by_count.setdefault(key, tuple(hw))
    return [by_count[key] for key in sorted(by_count)]


def calibrate(
    options: CalibrateOptions, step: Callable[[str], None] = lambda _: None
) -> DeviceProfile:
    """Measure, fit, check and write the profile; `step(name)` is told as each step starts."""
    name = _check_options(options)
    sizes = layouts(_facts(options, (336, 336)))
    facts = _facts(options, sizes[-1])
    base = _spec(options, sizes[-1])
    measured = _measure(base, facts, sizes, options.rounds, step)
    spec = _calibration(options, facts, measured)
    step("peak checks")
    spec = _with_checks(spec, options, facts, name, base)
    step("write profile")
    data = profile_data(name, facts, spec)
    return write_profile(options.out, data, profile_comments(spec, measured))


def _check_options(options: CalibrateOptions) -> str:
    if (options.model is None) == (options.bundle is None):
        raise InvalidArgumentError(expected("--model or --bundle", "exactly one", "neither/both"))
    if options.out.suffix != ".toml":
        raise InvalidArgumentError(expected("--out", "a FILE.toml path", str(options.out)))
    name = options.name or options.out.stem
    if name != options.out.stem:
        raise InvalidArgumentError(
            expected("--name", f"the file's name {options.out.stem!r} (profiles go by it)", name)
        )
    return name


def _spec(options: CalibrateOptions, hw: tuple[int, int]) -> dict[str, Any]:
    return {
        "model": options.model,
        "bundle": options.bundle,
        "device": options.device,
        "dtype": options.dtype,
        "quant": options.quant,
        "hw": list(hw),
    }


def _measure(
    base: dict[str, Any],
    facts: RunFacts,
    sizes: list[tuple[int, int]],
    rounds: int,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Every probe: memory of the machine, fixed costs, activation peaks, timings."""
    from edge_hired.device.memory_info import device_memory

    step("device memory")
    jetson = facts.device == "cuda" and _is_jetson()
    kind = "discrete" if facts.device == "cuda" and not jetson else "cpu"
    results: dict[str, Any] = {"memory": device_memory(kind)}
    short, long = 64, facts.visual_tokens + facts.prompt_tokens
    lengths = sorted({max(1, round(share * facts.visual_tokens)) for share in LENGTH_SHARES})
    plan = [
        ("runtime", {"step": "runtime"}),
        ("cuda", {**base, "step": "cuda", "kind": "unified" if jetson else "discrete"}),
        ("encoder", {**base, "step": "encoder"}),
        ("prefill_short", {**base, "step": "prefill", "tokens": short}),
        ("prefill_long", {**base, "step": "prefill", "tokens": long}),
        ("timing", {**base, "step": "timing", "lengths": lengths, "rounds": rounds,
                    "new": NEW_TOKENS, "layouts": [list(hw) for hw in sizes[:-1]]}),
    ]  # fmt: skip
    for key, spec in plan:
        step(key.replace("_", " "))
        results[key] = probe(spec)
    return results


def _is_jetson() -> bool:
    from edge_hired.device.jetson import detect_jetson

    return detect_jetson().is_jetson


def _calibration(
    options: CalibrateOptions, facts: RunFacts, measured: dict[str, Any]
) -> CalibrationSpec:
    """The [calibration] section from the probes' results (no peak check yet)."""
    from datetime import datetime, timezone

    from edge_hired.device.host_identity import host_line

    memory, cuda = measured["memory"], measured["cuda"]
    encoder = measured["encoder"]
    return CalibrationSpec(
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=host_line(l4t=_l4t()),
        model=f"{'bundle' if options.bundle else 'checkpoint'} {options.bundle or options.model}",
        model_key=model_key(facts.inputs),
        total_gib=round(memory.total_bytes / GIB, 3),
        available_gib=round(memory.free_bytes / GIB, 3),
        runtime_gib=round(measured["runtime"]["rss_mib"] / 1024, 4),
        cuda_context_gib=_gib_or_none(cuda.get("context_mib")),
        ort_session_gib=_gib_or_none(cuda.get("ort_mib")),
        encoder_activation_mib_per_partition=round(
            max(0.0, encoder["above_mib"]) / encoder["partitions"], 2
        ),
        prefill_activation_kib_per_token=prefill_kib_per_token(facts.inputs, measured),
        **fit_timings(measured["timing"]["runs"]),
    )


def _gib_or_none(mib: float | None) -> float | None:
    return None if mib is None else round(mib / 1024, 4)


def _l4t() -> str | None:
    from edge_hired.device.jetson import detect_jetson

    return detect_jetson().l4t


def _with_checks(
    spec: CalibrationSpec,
    options: CalibrateOptions,
    facts: RunFacts,
    name: str,
    base: dict[str, Any],
) -> CalibrationSpec:
    """The planner's peak with `spec` against whole requests (fresh processes) at two budgets."""
    from dataclasses import replace

    profile = _profile_with(spec, options, facts, name)
    request = run_request(facts, NEW_TOKENS)
    checks, cold = [], []
    for share in CHECK_SHARES:
        tokens = max(1, round(share * facts.visual_tokens))
        result = probe({**base, "step": "request", "tokens": tokens, "new": NEW_TOKENS})
        measured = result["device_peak_mib"] or result["peak_mib"]
        predicted = predicted_peak_bytes(facts.inputs, profile, request, tokens) / MIB
        checks.append(PeakCheck(visual_tokens=tokens, predicted_mib=round(predicted, 1),
                                measured_mib=round(measured, 1)))  # fmt: skip
        warm = predict_ttft(facts.inputs, profile, request, tokens).seconds
        cold.append(result["ttft_s"] - warm)
    extra = round(max(0.0, statistics.median(cold)), 3)
    return replace(spec, peak_check=tuple(checks), first_request_extra_s=extra)


def _profile_with(
    spec: CalibrationSpec, options: CalibrateOptions, facts: RunFacts, name: str
) -> DeviceProfile:
    """The profile as it will be written, in memory (to predict with)."""
    return profile_from_dict(profile_data(name, facts, spec), options.out)
