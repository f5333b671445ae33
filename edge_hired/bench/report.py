"""A benchmark's results: one row per setting, the terminal table, results.csv/json, the plots.

Each row holds the medians of its setting's measured runs (`MEDIAN_KEYS`), the spread of TTFT
and of CPU pressure, and the facts shared by every row; every run is kept as well, so each median
can be recomputed from `results.json`. Energy and the telemetry's memory peak are cut per run
from the recording by the phase marks each run left in it.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from edge_hired.bench.measure import MemorySource
from edge_hired.bench.options import Setting
from edge_hired.device.telemetry.report import Phase, Sample, TelemetryReport, write_telemetry
from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.sweep import FULL

FORMAT = "edge-hired-bench/1"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Columns of results.csv / the rows of results.json, in order.
COLUMNS = _words(
    """
    setting strategy budget_label budget runs images
    visual_tokens_total visual_tokens_kept kept_share llm_input_tokens new_tokens
    ttft_s ttft_s_min ttft_s_max prefill_s preprocess_s encode_s select_s decode_s
    decode_tokens_per_s e2e_s
    peak_memory_mib memory_source peak_rss_mib rss_before_mib cuda_peak_mib device_peak_mib
    telemetry_peak_mib energy_j cpu_some_avg10_max cpu_stall_pct_median cpu_stall_pct_max
    process_cores profile profile_cap_tokens device
"""
)
#: Per-run figures whose median is the row's figure of the same name.
MEDIAN_KEYS = _words(
    """
    visual_tokens_total visual_tokens_kept kept_share llm_input_tokens new_tokens
    ttft_s prefill_s preprocess_s encode_s select_s decode_s decode_tokens_per_s e2e_s
    peak_memory_mib peak_rss_mib rss_before_mib cuda_peak_mib device_peak_mib telemetry_peak_mib
    energy_j process_cores
"""
)
PLOTS = {
    "latency": "latency_vs_budget.png",
    "memory": "memory_vs_budget.png",
    "timeline": "timeline.png",
}


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


def first_run_timeline(
    report: TelemetryReport | None, runs: Sequence[dict[str, Any]], chosen: Setting
) -> TelemetryReport | None:
    """The telemetry of the first measured run of `chosen`."""
    first = next((r for r in runs if r["setting"] == chosen.label), None)
    if report is None or first is None or not _phases(report, first["telemetry_prefix"]):
        return None
    return request_timeline(report, first["telemetry_prefix"])


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
    from edge_hired.bench.plots import plot_memory_vs_budget, plot_timeline, plot_vs_budget

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
        "device": str(pipeline.device),
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
