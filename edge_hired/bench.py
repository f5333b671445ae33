"""Benchmark what token budgets cost: TTFT, prefill, decode rate, latency, memory and energy.

`run_bench(pipeline, BenchOptions(...), out_dir)` is the library call behind `edge-hired bench`.
Every setting (a budget ratio x a strategy; "full" runs once, with strategy full; adaptive
strategies such as PruMerge run once, they choose their own count) is run round-robin: round r
runs every setting once, so drift and other load hit all settings alike. Warm-up rounds come
first and are not recorded. A row per setting holds the medians over its measured runs; every
run is also kept, so each median can be recomputed from `results.json`.

How each figure is measured:
- TTFT: request start (before the image file is read) to the first generated token, from the
  pipeline's own marks. On CUDA the first token is copied to the host before it is timed, so the
  mark already waits for the GPU; `synchronize` drains queued work before a request starts and
  after it ends (end-to-end latency, CUDA peak memory).
- Peak memory, decided once with a reason: a Jetson's RAM in use (jtop, system-wide, unified
  memory); on CUDA `torch.cuda.max_memory_allocated`, reset per request; else the process's
  peak RSS (VmHWM, reset per request, resident weights included). Freed heap memory is handed
  back to the OS before each request so one request's peak does not carry the last one's.
- Energy: the telemetry's total power rail integrated over the request (empty without power).
- CPU contention: `/proc/pressure/cpu` "some" around each run: avg10 after it, and the share of
  the run's wall time during which some task (ours or another's) waited for a CPU (from the
  `total` counter); and `process_cores`, this process's CPU time over the run's wall time (about
  the thread count on a quiet machine, less when others take the cores).
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import ctypes.util
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from edge_hired.device.memory import current_rss_mib
from edge_hired.device.telemetry import (
    Phase,
    Sample,
    Sampler,
    TelemetryRecorder,
    TelemetryReport,
    choose_sampler,
    write_telemetry,
)
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected
from edge_hired.hired import STRATEGIES
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

FORMAT = "edge-hired-bench/1"
FULL = "full"
ADAPTIVE = ("prumerge", "prumerge+")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PRESSURE_FILE = Path("/proc/pressure/cpu")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Columns of results.csv / the rows of results.json, in order.
COLUMNS = _words(
    """
    setting strategy budget_label budget runs images
    visual_tokens_total visual_tokens_kept kept_share llm_input_tokens new_tokens
    ttft_s ttft_s_min ttft_s_max prefill_s preprocess_s encode_s select_s decode_s
    decode_tokens_per_s e2e_s
    peak_memory_mib memory_source peak_rss_mib rss_before_mib cuda_peak_mib telemetry_peak_mib
    energy_j cpu_some_avg10_max cpu_stall_pct_median cpu_stall_pct_max process_cores
    profile profile_cap_tokens device
"""
)
#: Per-run figures whose median is the row's figure of the same name.
MEDIAN_KEYS = _words(
    """
    visual_tokens_total visual_tokens_kept kept_share llm_input_tokens new_tokens
    ttft_s prefill_s preprocess_s encode_s select_s decode_s decode_tokens_per_s e2e_s
    peak_memory_mib peak_rss_mib rss_before_mib cuda_peak_mib telemetry_peak_mib energy_j
    process_cores
"""
)
#: Record keys from the pipeline's `timings_s`.
TIMINGS = {
    "preprocess_s": "preprocess",
    "encode_s": "encode",
    "select_s": "select",
    "prefill_s": "prefill_to_first_token",
    "decode_s": "decode",
}
PLOTS = {
    "latency": "latency_vs_budget.png",
    "memory": "memory_vs_budget.png",
    "timeline": "timeline.png",
}


# ---------------------------------------------------------------------------------------------
# Settings and options


@dataclass(frozen=True)
class Setting:
    """One thing to measure: a strategy at a budget ratio (None: full, or adaptive)."""

    strategy: str
    ratio: float | None = None

    @property
    def budget_label(self) -> str:
        if self.strategy == FULL:
            return FULL
        return "adaptive" if self.ratio is None else f"{self.ratio:g}"

    @property
    def label(self) -> str:
        return FULL if self.strategy == FULL else f"{self.strategy}@{self.budget_label}"

    def selection(self, seed: int = 0) -> SelectionOptions:
        return SelectionOptions(strategy=self.strategy, ratio=self.ratio, seed=seed)


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often; the defaults are the paper's Table 4 budgets."""

    budgets: tuple[str | float, ...] = (FULL, 0.4, 0.3, 0.2, 0.1)
    strategies: tuple[str, ...] = ("hired",)
    images: tuple[str | Path, ...] = ()  # files or directories; empty: the bundled sample
    prompt: str = "Describe the image."
    repeats: int = 3
    warmup: int = 1  # warm-up rounds, each runs every setting once, not recorded
    max_new_tokens: int = 16
    fixed_length: bool = True  # generate exactly max_new_tokens (min_new_tokens) for fair rates
    profile: str | None = None
    telemetry_backend: str = "auto"
    telemetry_interval_s: float = 0.05
    plots: bool = True
    progress: bool = True
    seed: int = 0


def parse_budgets(text: str) -> tuple[str | float, ...]:
    """'full,0.4,0.2' -> ('full', 0.4, 0.2); InvalidArgumentError names the bad item."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise InvalidArgumentError(expected("budgets", "a list like full,0.4,0.2", text))
    return tuple(_budget(item) for item in items)


def parse_strategies(text: str) -> tuple[str, ...]:
    """'hired,spatial' -> ('hired', 'spatial'), checked against the known strategies."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    check_strategies(items)
    return items


def _budget(item: str | float) -> str | float:
    if isinstance(item, str) and item.lower() == FULL:
        return FULL
    message = expected("budget", "'full' or a ratio in (0, 1]", item)
    try:
        value = float(item)
    except (TypeError, ValueError):
        raise InvalidArgumentError(message) from None
    if not math.isfinite(value) or not 0 < value <= 1:
        raise InvalidArgumentError(message)
    return value


def check_strategies(strategies: Sequence[str]) -> None:
    """Known, budgeted-or-adaptive strategies; 'full' belongs in the budgets."""
    allowed = [s for s in STRATEGIES if s != FULL]
    if not strategies:
        raise InvalidArgumentError(
            expected("strategies", "one or more of " + ", ".join(allowed), "")
        )
    for name in strategies:
        if name == FULL:
            raise InvalidArgumentError("strategy full: expected it among the budgets (full,0.2)")
        if name not in allowed:
            raise InvalidArgumentError(expected("strategy", " | ".join(allowed), name))


def settings_for(options: BenchOptions) -> list[Setting]:
    """full first (if asked), then each ratio x each budgeted strategy, then adaptive ones."""
    check_strategies(options.strategies)
    budgets = list(dict.fromkeys(_budget(b) for b in options.budgets))
    if not budgets:
        raise InvalidArgumentError(expected("budgets", "at least one", options.budgets))
    ratios = [b for b in budgets if b != FULL]
    strategies = list(dict.fromkeys(options.strategies))
    settings = [Setting(FULL)] if FULL in budgets else []
    settings += [Setting(s, r) for r in ratios for s in strategies if s not in ADAPTIVE]
    settings += [Setting(s) for s in strategies if s in ADAPTIVE]
    return settings


def check_options(options: BenchOptions) -> None:
    """Counts and prompt a benchmark can honour."""
    for name, low in (("repeats", 1), ("warmup", 0), ("max_new_tokens", 1)):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(expected(name, f"an integer >= {low}", value))
    if not isinstance(options.prompt, str) or not options.prompt.strip():
        raise InvalidArgumentError(expected("prompt", "non-empty text", options.prompt))
    interval = options.telemetry_interval_s
    if not interval > 0:
        raise InvalidArgumentError(expected("telemetry interval (s)", "> 0", interval))


def image_paths(sources: Iterable[str | Path]) -> list[Path]:
    """Image files from files and directories (sorted); the bundled sample when none given."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidArgumentError(
                    expected(f"images in {path}", " or ".join(IMAGE_SUFFIXES) + " files", "none")
                )
            paths += found
        else:
            paths.append(path)
    if not paths:
        from edge_hired.data import sample_image_path

        paths.append(sample_image_path())
    for path in paths:
        load_image(path)  # fail fast on a bad file, before any model time is spent
    return paths


# ---------------------------------------------------------------------------------------------
# Device helpers


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work; a no-op unless `device` is a CUDA device."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1024 * 1024)


def release_free_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS is current."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: musl has no malloc_trim
            ctypes.CDLL(name).malloc_trim(0)


@dataclass(frozen=True)
class CpuPressure:
    """One reading of /proc/pressure/cpu's "some" line."""

    avg10: float
    total_us: int


def read_cpu_pressure(path: Path = PRESSURE_FILE) -> CpuPressure | None:
    """The 'some' line of the CPU pressure file, or None where the kernel has no PSI."""
    try:
        line = next(x for x in path.read_text().splitlines() if x.startswith("some "))
    except (OSError, StopIteration):
        return None
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return CpuPressure(float(fields["avg10"]), int(fields["total"]))


def stall_pct(
    before: CpuPressure | None, after: CpuPressure | None, seconds: float
) -> float | None:
    """Percent of `seconds` during which some task waited for a CPU."""
    if before is None or after is None or seconds <= 0:
        return None
    return 100 * (after.total_us - before.total_us) / 1e6 / seconds


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
        return MemorySource("cuda_peak_mib", "torch.cuda.max_memory_allocated per request")
    return MemorySource("peak_rss_mib", "process peak RSS (VmHWM) per request, weights included")


# ---------------------------------------------------------------------------------------------
# Profiles (edge_hired.profiles loads them; the planner, edge_hired.budget, is optional here)


def load_device_profile(name: str | None) -> Any:
    """The named device profile, validated (ProfileError lists the known ones); None if unnamed."""
    if name is None:
        return None
    from edge_hired.profiles import load_profile

    return load_profile(name)


def profile_facts(profile: Any, pipeline: Pipeline) -> dict[str, Any]:
    """The profile's name and, when the planner is importable, its planned token cap."""
    if profile is None:
        return {"profile": None, "profile_cap_tokens": None, "profile_note": ""}
    try:
        from edge_hired.budget import plan_for_pipeline
    except ImportError as e:
        note = f"name recorded only: no budget planner to call ({e})"
        return {"profile": profile.name, "profile_cap_tokens": None, "profile_note": note}
    plan = plan_for_pipeline(profile, pipeline)
    return {
        "profile": profile.name,
        "profile_cap_tokens": plan.cap_tokens,
        "profile_note": str(plan),
    }


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class RequestContext:
    """What every request of one benchmark shares."""

    pipeline: Pipeline
    options: BenchOptions
    sampling: SamplingOptions
    memory: MemorySource
    recorder: TelemetryRecorder | None = None


@dataclass(frozen=True)
class Slot:
    """One request in the schedule."""

    round: int
    image: Path
    setting: Setting


def schedule(settings: Sequence[Setting], images: Sequence[Path], rounds: int) -> list[Slot]:
    """Round-robin: each round runs every image x setting once, in the same order."""
    return [Slot(r, image, s) for r in range(rounds) for image in images for s in settings]


def measure_request(ctx: RequestContext, slot: Slot, order: int) -> dict[str, Any]:
    """Run one request and return its record (figures from the pipeline, telemetry and PSI)."""
    device = ctx.pipeline.parts.device
    release_free_heap()
    synchronize(device)
    reset_cuda_peak(device)
    rss_before, before = current_rss_mib(), read_cpu_pressure()
    prefix = f"{order}:"
    cpu_start, start = time.process_time(), time.perf_counter()
    result = ctx.pipeline.run(
        slot.image,
        ctx.options.prompt,
        slot.setting.selection(ctx.options.seed),
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


def _warm_up(ctx: RequestContext, slot: Slot) -> None:
    ctx.pipeline.run(
        slot.image, ctx.options.prompt, slot.setting.selection(ctx.options.seed), ctx.sampling
    )


class FixedLength:
    """While open, the LLM generates exactly max_new_tokens (its generation_config's minimum)."""

    def __init__(self, llm: torch.nn.Module, tokens: int | None) -> None:
        self.config = getattr(llm, "generation_config", None)
        self.tokens = tokens

    def __enter__(self) -> None:
        if self.config is not None and self.tokens is not None:
            self.saved = self.config.min_new_tokens
            self.config.min_new_tokens = self.tokens

    def __exit__(self, *exc: object) -> None:
        if self.config is not None and self.tokens is not None:
            self.config.min_new_tokens = self.saved


def _telemetry(options: BenchOptions) -> tuple[TelemetryRecorder, str]:
    sampler, reason = choose_sampler(options.telemetry_backend)
    recorder = TelemetryRecorder(sampler, options.telemetry_interval_s, reason)
    return recorder, reason


# ---------------------------------------------------------------------------------------------
# Summaries


def median_or_none(values: Iterable[float | None]) -> float | None:
    """Median of the values that are numbers; None when there are none."""
    numbers = [v for v in values if v is not None]
    return statistics.median(numbers) if numbers else None


def summarise(setting: Setting, runs: Sequence[dict[str, Any]], extra: dict[str, Any]) -> dict:
    """One row: medians of the setting's runs, spreads of TTFT and of CPU pressure."""
    row: dict[str, Any] = {
        "setting": setting.label,
        "strategy": setting.strategy,
        "budget_label": setting.budget_label,
        "runs": len(runs),
        "images": len({r["image"] for r in runs}),
    }
    row.update({key: median_or_none(r[key] for r in runs) for key in MEDIAN_KEYS})
    row["budget"] = (
        runs[0]["budget"]
        if setting.ratio is not None or setting.strategy == FULL
        else row["kept_share"]
    )  # adaptive strategies: the share they chose to keep
    row["ttft_s_min"] = min(r["ttft_s"] for r in runs)
    row["ttft_s_max"] = max(r["ttft_s"] for r in runs)
    row["cpu_some_avg10_max"] = _max_or_none(r["cpu_some_avg10"] for r in runs)
    row["cpu_stall_pct_median"] = median_or_none(r["cpu_stall_pct"] for r in runs)
    row["cpu_stall_pct_max"] = _max_or_none(r["cpu_stall_pct"] for r in runs)
    row.update(extra)
    return {key: row.get(key) for key in COLUMNS}


def _max_or_none(values: Iterable[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return max(numbers) if numbers else None


def add_telemetry(
    runs: list[dict[str, Any]], report: TelemetryReport | None, memory: MemorySource
) -> None:
    """Per run: energy and the telemetry's memory peak over the run's window; the chosen peak."""
    for run in runs:
        window = _window(report, run.get("telemetry_prefix"))
        run["energy_j"] = report.energy_j(*window) if report and window else None
        peaks = report.peak_memory_mib(*window) if report and window else {}
        run["telemetry_peak_mib"] = peaks.get(report.memory_key) if report else None
        run["peak_memory_mib"] = run[memory.key]


def _window(report: TelemetryReport | None, prefix: str | None) -> tuple[float, float] | None:
    phases = _phases(report, prefix)
    return (phases[0].start_s, phases[-1].end_s) if phases else None


def _phases(report: TelemetryReport | None, prefix: str | None) -> list[Phase]:
    if report is None or prefix is None:
        return []
    return [p for p in report.phases if p.name.startswith(prefix)]


def request_timeline(report: TelemetryReport, prefix: str) -> TelemetryReport:
    """The recording cut to one request (plus two samples either side), time 0 at its start."""
    phases = _phases(report, prefix)
    lo, hi = phases[0].start_s, phases[-1].end_s
    margin = 2 * report.interval_s
    samples = tuple(
        Sample(s.t_s - lo, s.readings)
        for s in report.samples
        if lo - margin <= s.t_s <= hi + margin
    )
    cut = tuple(Phase(p.name.removeprefix(prefix), p.start_s - lo, p.end_s - lo) for p in phases)
    return replace(report, samples=samples, phases=cut)


def representative(settings: Sequence[Setting]) -> Setting:
    """The smallest budget (first strategy listed at it); full when nothing else was asked."""
    budgeted = [s for s in settings if s.ratio is not None]
    return min(budgeted, key=lambda s: s.ratio) if budgeted else settings[0]


# ---------------------------------------------------------------------------------------------
# Report and files


@dataclass
class BenchReport:
    """Rows (one per setting), every measured run in order, and the files written."""

    rows: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    environment: dict[str, Any]
    options: dict[str, Any]
    warmup_order: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    timeline: TelemetryReport | None = None

    @property
    def run_order(self) -> list[str]:
        """Setting labels of the measured runs in the order they ran."""
        return [r["setting"] for r in self.runs]

    def row(self, setting: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["setting"] == setting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "columns": list(COLUMNS),
            "rows": self.rows,
            "runs": self.runs,
            "run_order": self.run_order,
            "warmup_order": self.warmup_order,
            "environment": self.environment,
            "options": self.options,
            "files": {k: str(v) for k, v in self.files.items()},
        }

    def table(self) -> str:
        """A fixed-width summary for the terminal."""
        head = "".join(f"{title:>{width}}" for _, title, width, _ in TABLE)
        return "\n".join([f"{'setting':<19}{head}", *(_table_line(r) for r in self.rows)])


TABLE = (
    ("visual_tokens_kept", "visual", 7, ".0f"),
    ("llm_input_tokens", "LLM in", 7, ".0f"),
    ("ttft_s", "TTFT s", 9, ".3f"),
    ("prefill_s", "prefill s", 10, ".3f"),
    ("decode_tokens_per_s", "tok/s", 8, ".2f"),
    ("e2e_s", "e2e s", 8, ".3f"),
    ("peak_memory_mib", "peak MiB", 10, ".0f"),
    ("energy_j", "energy J", 10, ".2f"),
    ("cpu_stall_pct_median", "CPU stall%", 11, ".1f"),
)


def _table_line(row: dict[str, Any]) -> str:
    cells = ("-" if row[key] is None else format(row[key], spec) for key, _, _, spec in TABLE)
    return f"{row['setting']:<19}" + "".join(
        f"{cell:>{width}}" for cell, (_, _, width, _) in zip(cells, TABLE, strict=True)
    )


def write_results(report: BenchReport, out_dir: Path) -> None:
    """results.csv (one row per setting, every column) and results.json (rows, runs, facts)."""
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    try:
        with csv_path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(
                {k: ("" if v is None else v) for k, v in row.items()} for row in report.rows
            )
        report.files.update(csv=csv_path, json=json_path)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as e:
        raise EdgeHiredError(f"bench results in {out_dir}: cannot write them ({e})") from e


def plot_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for plotting: the full row repeated under each strategy so each line starts at 1.0."""
    others = sorted({r["strategy"] for r in rows if r["strategy"] != FULL})
    full = [r for r in rows if r["strategy"] == FULL]
    rest = [r for r in rows if r["strategy"] != FULL]
    return rest + [{**f, "strategy": s} for f in full for s in others] if others else list(rows)


def write_plots(report: BenchReport, out_dir: Path, cap_mib: float | None = None) -> None:
    """TTFT and tokens/s against budget, memory against budget, and the timeline."""
    from edge_hired.device.plots import plot_memory_vs_budget, plot_timeline, plot_vs_budget

    rows = plot_rows(report.rows)
    report.files["latency_plot"] = plot_vs_budget(
        rows, "budget", ["ttft_s", "decode_tokens_per_s"], out_dir / PLOTS["latency"]
    )
    report.files["memory_plot"] = plot_memory_vs_budget(
        rows,
        out_dir / PLOTS["memory"],
        x="budget",
        memory_keys=("peak_memory_mib",),
        cap_mib=cap_mib,
    )
    if report.timeline is not None:
        report.files["timeline_json"] = write_telemetry(report.timeline, out_dir / "timeline.json")
        report.files["timeline_plot"] = plot_timeline(report.timeline, out_dir / PLOTS["timeline"])


def environment(pipeline: Pipeline, memory: MemorySource, telemetry_reason: str) -> dict[str, Any]:
    """Facts about the machine and the run that a reader of the results needs."""
    return {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(pipeline.parts.device),
        "device_reason": pipeline.device_reason,
        "memory_source": memory.key,
        "memory_reason": memory.reason,
        "telemetry": telemetry_reason,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# The library call


def run_bench(pipeline: Pipeline, options: BenchOptions, out_dir: str | Path) -> BenchReport:
    """Measure every setting round-robin, write results.csv/json and the plots into `out_dir`."""
    check_options(options)
    settings, images = settings_for(options), image_paths(options.images)
    out = _make_dir(Path(out_dir).expanduser())
    recorder, reason = _telemetry(options)
    memory = choose_memory_source(pipeline.parts.device, recorder.sampler)
    sampling = SamplingOptions(max_new_tokens=options.max_new_tokens, seed=options.seed)
    ctx = RequestContext(pipeline, options, sampling, memory)
    profile = profile_facts(load_device_profile(options.profile), pipeline)
    slots = schedule(settings, images, options.warmup + options.repeats)
    with FixedLength(pipeline.parts.llm, options.max_new_tokens if options.fixed_length else None):
        runs, report = _run_slots(ctx, recorder, slots)
    add_telemetry(runs, report, memory)
    bench = BenchReport(
        _rows(settings, runs, profile, memory, pipeline),
        runs,
        {**environment(pipeline, memory, reason), **profile},
        _options_dict(options),
        [s.setting.label for s in slots if s.round < options.warmup],
        timeline=_timeline(report, runs, representative(settings)),
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
        "device": str(pipeline.parts.device),
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
                _warm_up(ctx, slot)
            else:
                ctx.recorder = ctx.recorder or recorder.start()
                runs.append(measure_request(ctx, slot, len(runs)))
            bar.update()
    finally:
        bar.close()
        report = recorder.stop() if ctx.recorder is not None else None
    return runs, report


def _timeline(
    report: TelemetryReport | None, runs: Sequence[dict[str, Any]], chosen: Setting
) -> TelemetryReport | None:
    """The telemetry of the first measured run of `chosen`."""
    first = next((r for r in runs if r["setting"] == chosen.label), None)
    if report is None or first is None or not _phases(report, first["telemetry_prefix"]):
        return None
    return request_timeline(report, first["telemetry_prefix"])


def _options_dict(options: BenchOptions) -> dict[str, Any]:
    data = asdict(options)
    data["images"] = [str(p) for p in options.images]
    return data


def _make_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeHiredError(f"bench output {out}: cannot create it ({e})") from e
    return out
