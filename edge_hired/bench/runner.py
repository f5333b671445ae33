"""`run_bench`: the library call behind `edge-hired bench`.

It checks the options, expands them into settings and a round-robin schedule, plans the device
profile's visual-token cap per image (applied to every request), runs the warm-up rounds
unrecorded and the measured ones under the telemetry recorder (with the LLM held to a fixed
output length), then summarises the runs and writes results.csv/json and the plots.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edge_hired.bench.measure import (
    FixedLength,
    MemorySource,
    RequestContext,
    choose_memory_source,
    measure_request,
    warm_up,
)
from edge_hired.bench.options import (
    BenchOptions,
    Setting,
    Slot,
    check_options,
    image_paths,
    load_device_profile,
    plan_profile,
    schedule,
    settings_for,
)
from edge_hired.bench.report import (
    BenchReport,
    add_telemetry,
    environment,
    first_run_timeline,
    representative,
    summarise,
    write_plots,
    write_results,
)
from edge_hired.device.telemetry.choose import choose_sampler
from edge_hired.device.telemetry.recorder import TelemetryRecorder
from edge_hired.device.telemetry.report import TelemetryReport
from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline


def run_bench(pipeline: Pipeline, options: BenchOptions, out_dir: str | Path) -> BenchReport:
    """Measure every setting round-robin, write results.csv/json and the plots into `out_dir`."""
    check_options(options)
    settings, images = settings_for(options), image_paths(options.images)
    plan = plan_profile(load_device_profile(options.profile), pipeline, options, images)
    out = _make_dir(Path(out_dir).expanduser())
    recorder, reason = _telemetry(options)
    memory = choose_memory_source(pipeline.device, recorder.sampler)
    sampling = SamplingOptions(max_new_tokens=options.max_new_tokens, seed=options.seed)
    ctx = RequestContext(pipeline, options, sampling, memory, profile=plan)
    profile = plan.facts()
    slots = schedule(settings, images, options.warmup + options.repeats)
    with FixedLength(
        pipeline.generation_config, options.max_new_tokens if options.fixed_length else None
    ):
        runs, report = _run_slots(ctx, recorder, slots)
    add_telemetry(runs, report, memory)
    bench = BenchReport(
        _rows(settings, runs, profile, memory, pipeline),
        runs,
        {**environment(pipeline, memory, reason), **profile},
        _options_dict(options),
        [s.setting.label for s in slots if s.round < options.warmup],
        timeline=first_run_timeline(report, runs, representative(settings)),
    )
    _write_all(bench, out, options.plots)
    return bench


def _rows(
    settings: Sequence[Setting],
    runs: Sequence[dict[str, Any]],
    profile: dict[str, Any],
    memory: MemorySource,
    pipeline: Pipeline,
) -> list[dict[str, Any]]:
    extra = {
        "profile": profile["profile"],
        "profile_cap_tokens": profile["profile_cap_tokens"],
        "memory_source": memory.key,
        "device": str(pipeline.device),
    }
    return [summarise(s, [r for r in runs if r["setting"] == s.label], extra) for s in settings]


def _write_all(bench: BenchReport, out: Path, plots: bool) -> None:
    write_results(bench, out)
    if plots:
        write_plots(bench, out)
        write_results(bench, out)  # again, so results.json lists the plots too


def _run_slots(
    ctx: RequestContext, recorder: TelemetryRecorder, slots: Sequence[Slot]
) -> tuple[list[dict[str, Any]], TelemetryReport | None]:
    """Warm-up slots, then the measured ones under the telemetry recorder; a tqdm bar over all."""
    from tqdm import tqdm

    runs: list[dict[str, Any]] = []
    warmup = ctx.options.warmup
    bar = tqdm(
        total=len(slots),
        desc="bench",
        unit="run",
        disable=not ctx.options.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for slot in slots:
            bar.set_postfix_str(("warm-up " if slot.round < warmup else "") + slot.setting.label)
            if slot.round < warmup:
                warm_up(ctx, slot)
            else:
                ctx.recorder = ctx.recorder or recorder.start()
                runs.append(measure_request(ctx, slot, len(runs)))
            bar.update()
    finally:
        bar.close()
        report = recorder.stop() if ctx.recorder is not None else None
    return runs, report


def _options_dict(options: BenchOptions) -> dict[str, Any]:
    """The options as JSON-ready data (a loaded profile recorded by its name and file)."""
    data = asdict(replace(options, profile=None))
    data["images"] = [str(p) for p in options.images]
    profile = options.profile
    data["profile"] = getattr(profile, "name", profile)
    data["profile_path"] = str(getattr(profile, "path", None) or "") or None
    return data


def _make_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeHiredError(f"bench output {out}: cannot create it ({e})") from e
    return out


def _telemetry(options: BenchOptions) -> tuple[TelemetryRecorder, str]:
    sampler, reason = choose_sampler(options.telemetry_backend)
    recorder = TelemetryRecorder(sampler, options.telemetry_interval_s, reason)
    return recorder, reason
