"""Pictures of telemetry and benchmark results, for `edge-hired run --telemetry` and `bench`.

matplotlib is imported only when a plot is drawn, and drawn on a bare `Figure` with the Agg canvas:
no GUI backend, no pyplot global state, safe in threads and on headless boards. Every function
writes a PNG of exactly `size_px` pixels and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_hired.device.telemetry.base import POWER_KEY
from edge_hired.device.telemetry.report import TelemetryReport
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected

DPI = 100
DEFAULT_SIZE_PX = (1200, 800)
Row = Mapping[str, Any]


class PlottingUnavailable(EdgeHiredError):
    """matplotlib is not installed."""


def plot_timeline(
    report: TelemetryReport, path: str | Path, size_px: tuple[int, int] = DEFAULT_SIZE_PX
) -> Path:
    """Memory (MiB) and power (W) against time, with the request's phases shaded."""
    figure, (memory_ax, power_ax) = _figure(size_px, rows=2)
    for key in _memory_keys(report):
        width = 1.5 if key == report.memory_key else 1.0
        memory_ax.plot(*_unzip(report.series(key)), label=key, lw=width)
    memory_ax.set_ylabel("memory (MiB)")
    _plot_power(report, power_ax)
    for ax in (memory_ax, power_ax):
        _shade_phases(report, ax, label=ax is memory_ax)
    memory_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    power_ax.set_xlabel("time (s)")
    figure.suptitle(f"telemetry: {report.summary_line()}", fontsize="medium")
    return _save(figure, path)


def plot_vs_budget(
    rows: Sequence[Row],
    x: str,
    ys: Sequence[str],
    path: str | Path,
    group: str = "strategy",
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Path:
    """One panel per `ys` key (e.g. ttft_s, decode_tokens_per_s) against `x`, a line per `group`."""
    _check_rows(rows, x, ys)
    figure, axes = _figure(size_px, rows=len(ys))
    for ax, y in zip(axes, ys, strict=True):
        for name, points in _lines(rows, x, y, group).items():
            ax.plot(*_unzip(points), marker="o", label=name)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes[0].legend(title=group, fontsize="small")
    axes[-1].set_xlabel(x)
    return _save(figure, path)


def plot_memory_vs_budget(
    rows: Sequence[Row],
    path: str | Path,
    x: str = "budget",
    memory_keys: Sequence[str] = ("peak_rss_mib",),
    group: str = "strategy",
    cap_mib: float | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Path:
    """Peak memory (MiB) against `x`, a line per `group` and memory key, and the cap if given."""
    _check_rows(rows, x, memory_keys)
    figure, (ax,) = _figure(size_px, rows=1)
    for style, key in zip(("-", "--", ":", "-."), memory_keys, strict=False):
        for name, points in _lines(rows, x, key, group).items():
            ax.plot(*_unzip(points), ls=style, marker="o", label=f"{name}: {key}")
    if cap_mib is not None:
        ax.axhline(cap_mib, color="red", lw=1, label=f"memory cap {cap_mib:.0f} MiB")
    ax.set_xlabel(x)
    ax.set_ylabel("peak memory (MiB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(figure, path)


def _figure(size_px: tuple[int, int], rows: int) -> tuple[Any, list[Any]]:
    """A bare Agg figure of exactly `size_px` pixels with `rows` stacked axes sharing x."""
    width, height = size_px
    if width < 100 or height < 100:
        raise InvalidArgumentError(expected("plot size (px)", "at least 100 x 100", size_px))
    figure_class, canvas_class = _matplotlib()
    figure = figure_class(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    canvas_class(figure)
    return figure, list(figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib  # noqa: F401 - fail here, before any submodule, when it is missing
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlottingUnavailable(
            "plots need matplotlib: pip install matplotlib (or 'edge-hired[plots]')"
        ) from e
    return Figure, FigureCanvasAgg


def _save(figure: Any, path: str | Path) -> Path:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=DPI, format="png")
    except OSError as e:
        raise EdgeHiredError(f"plot {target}: cannot write it ({e})") from e
    return target


def _memory_keys(report: TelemetryReport) -> list[str]:
    keys = list(report.peak_memory_mib())
    return sorted(keys, key=lambda k: (k != report.memory_key, k))


def _plot_power(report: TelemetryReport, ax: Any) -> None:
    rails = [k for k in report.reading_names() if k.startswith("power_") and k != POWER_KEY]
    if not report.series(POWER_KEY) and not rails:
        ax.text(
            0.5,
            0.5,
            f"power not readable with {report.backend}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    for key in [POWER_KEY, *rails]:
        times, milliwatts = _unzip(report.series(key))
        if times:
            total = key == POWER_KEY
            ax.plot(
                times,
                [v / 1000 for v in milliwatts],
                lw=1.5 if total else 1.0,
                ls="-" if total else "--",
                label=_rail_label(key),
            )
    if report.series(POWER_KEY) or rails:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_ylabel("power (W)")


def _rail_label(key: str) -> str:
    """power_total_mw -> total, power_VDD_SOC_mw -> VDD_SOC."""
    return key.removeprefix("power_").removesuffix("_mw")


def _shade_phases(report: TelemetryReport, ax: Any, label: bool) -> None:
    names = list(dict.fromkeys(p.name for p in report.phases))
    for phase in report.phases:
        colour = f"C{names.index(phase.name) % 10}"
        first = label and phase is next(p for p in report.phases if p.name == phase.name)
        ax.axvspan(
            phase.start_s,
            phase.end_s,
            color=colour,
            alpha=0.15,
            label=f"phase: {phase.name}" if first else None,
        )


def _check_rows(rows: Sequence[Row], x: str, ys: Sequence[str]) -> None:
    if not rows:
        raise InvalidArgumentError(expected("rows to plot", "at least one", rows))
    if not ys:
        raise InvalidArgumentError(expected("values to plot (ys)", "at least one key", ys))
    for key in (x, *ys):
        if not any(_number(row.get(key)) is not None for row in rows):
            raise InvalidArgumentError(
                expected(f"column {key!r}", "a number in at least one row", sorted(rows[0]))
            )


def _lines(rows: Sequence[Row], x: str, y: str, group: str) -> dict[str, list[tuple[float, float]]]:
    """(x, y) points per group value, sorted by x; rows lacking either number are skipped."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        px, py = _number(row.get(x)), _number(row.get(y))
        if px is not None and py is not None:
            lines.setdefault(str(row.get(group, "all")), []).append((px, py))
    return {name: sorted(points) for name, points in sorted(lines.items())}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _unzip(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] for p in points]
