"""Plots: the data each figure draws (read back from the matplotlib objects and the PNG's pixels),
the requested pixel size, and a clear error when matplotlib is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from edge_hired.bench.plots import (
    PlottingUnavailable,
    plot_memory_vs_budget,
    plot_timeline,
    plot_vs_budget,
)
from edge_hired.device.telemetry.base import POWER_KEY
from edge_hired.device.telemetry.report import Phase, Sample, TelemetryReport
from edge_hired.errors import EdgeHiredError, InvalidArgumentError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def jetson_like_report(power: bool = True) -> TelemetryReport:
    samples = []
    for i in range(40):
        t = i * 0.1
        busy = 1.0 <= t < 3.0
        readings = {
            "ram_used_mib": 9200.0 + (1900.0 if busy else 0.0) + i,
            "gpu_shared_mib": 6065.0 + (1900.0 if busy else 0.0),
            "process_rss_mib": 2100.0 + 3 * i,
        }
        if power:
            readings[POWER_KEY] = 17000.0 if busy else 6500.0
            readings["power_VDD_CPU_GPU_CV_mw"] = 9000.0 if busy else 1200.0
        samples.append(Sample(t, readings))
    phases = (
        Phase("preprocess", 0.2, 0.4),
        Phase("encode", 1.0, 2.0),
        Phase("select", 2.0, 2.05),
        Phase("prefill", 2.05, 2.6),
        Phase("decode", 2.6, 3.0),
    )
    backend = "jtop" if power else "psutil"
    return TelemetryReport(backend, "test", 0.1, tuple(samples), phases, memory_key="ram_used_mib")


ROWS = [
    {
        "strategy": s,
        "budget": b,
        "ttft_s": t0 * b + 0.4,
        "decode_tokens_per_s": 20 - 5 * b,
        "peak_rss_mib": 5000 + 1500 * b + (200 if s == "random" else 0),
    }
    for s, t0 in (("hired", 2.0), ("random", 2.1), ("full", 2.0))
    for b in (0.1, 0.2, 0.4, 1.0)
]


def assert_png(path, size):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Every matplotlib Figure saved during the test, in order, to read the plotted data back."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def recording_savefig(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def lines_of(ax) -> dict[str, tuple[list[float], list[float]]]:
    """label -> (x, y) of every labelled line on the axes."""
    return {
        line.get_label(): (
            [float(v) for v in line.get_xdata()],
            [float(v) for v in line.get_ydata()],
        )
        for line in ax.get_lines()
    }


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def near_colour(image: np.ndarray, colour: str, tol: int = 12) -> np.ndarray:
    """Mask of pixels within `tol` (per channel) of the colour "#rrggbb"."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(image - rgb).max(axis=-1) <= tol


def pixel_of(ax, x: float, y: float, height_px: int) -> tuple[int, int]:
    """(row, col) in the PNG of the data point (x, y) on `ax` (display origin is bottom-left)."""
    col, up = ax.transData.transform((x, y))
    return round(float(height_px - up)), round(float(col))


TAB = {"C0": "#1f77b4", "C1": "#ff7f0e", "C2": "#2ca02c"}  # matplotlib's first three colours
BUSY = [1.0 <= i * 0.1 < 3.0 for i in range(40)]  # the report's busy samples, t in [1, 3)


def test_timeline_plots_every_memory_and_power_reading(tmp_path, drawn):
    path = plot_timeline(jetson_like_report(), tmp_path / "plots" / "timeline.png", (900, 600))
    assert path == tmp_path / "plots" / "timeline.png"
    assert_png(path, (900, 600))
    (figure,) = drawn
    memory_ax, power_ax = figure.axes[:2]
    times = [pytest.approx(i * 0.1) for i in range(40)]
    memory = lines_of(memory_ax)
    assert set(memory) == {"ram_used_mib", "gpu_shared_mib", "process_rss_mib"}
    assert memory["ram_used_mib"] == (times, [9200 + 1900 * b + i for i, b in enumerate(BUSY)])
    assert memory["gpu_shared_mib"][1] == [6065 + 1900 * b for b in BUSY]
    assert memory["process_rss_mib"][1] == [2100 + 3 * i for i in range(40)]
    widths = {line.get_label(): line.get_linewidth() for line in memory_ax.get_lines()}
    assert widths == {"ram_used_mib": 1.5, "gpu_shared_mib": 1.0, "process_rss_mib": 1.0}
    power = lines_of(power_ax)  # milliwatts drawn as watts; the total rail keeps its own name
    assert power == {
        "total": (times, [17.0 if b else 6.5 for b in BUSY]),
        "VDD_CPU_GPU_CV": (times, [9.0 if b else 1.2 for b in BUSY]),
    }
    for ax in (memory_ax, power_ax):  # one shaded span per phase, over the phase's own bounds
        spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
        assert spans == [
            pytest.approx((0.2, 0.4)),
            pytest.approx((1.0, 2.0)),
            pytest.approx((2.0, 2.05)),
            pytest.approx((2.05, 2.6)),
            pytest.approx((2.6, 3.0)),
        ]
    legend = [t.get_text() for t in memory_ax.get_legend().get_texts()]
    assert "phase: encode" in legend and legend.count("phase: decode") == 1
    assert near_colour(pixels(path), TAB["C0"]).sum() > 200  # the first series is drawn


def test_timeline_without_power_still_plots_memory(tmp_path, drawn):
    path = plot_timeline(jetson_like_report(power=False), tmp_path / "t.png")
    assert_png(path, (1200, 800))
    memory_ax, power_ax = drawn[0].axes[:2]
    assert lines_of(memory_ax)["ram_used_mib"][1][10] == 9200 + 1900 + 10  # t = 1.0 is busy
    assert power_ax.get_lines() == []
    assert [t.get_text() for t in power_ax.texts] == ["power not readable with psutil"]


def test_metrics_against_budget_per_strategy(tmp_path, drawn):
    path = plot_vs_budget(
        ROWS,
        "budget",
        ["ttft_s", "decode_tokens_per_s"],
        tmp_path / "vs_budget.png",
        size_px=(1000, 700),
    )
    assert_png(path, (1000, 700))
    ttft_ax, decode_ax = drawn[0].axes[:2]
    assert (ttft_ax.get_ylabel(), decode_ax.get_ylabel()) == ("ttft_s", "decode_tokens_per_s")
    budgets = [0.1, 0.2, 0.4, 1.0]
    ttft = lines_of(ttft_ax)  # ttft = t0 * budget + 0.4: t0 = 2.0 (hired, full), 2.1 (random)
    assert set(ttft) == {"full", "hired", "random"}
    assert ttft["hired"] == (budgets, pytest.approx([0.6, 0.8, 1.2, 2.4]))
    assert ttft["random"] == (budgets, pytest.approx([0.61, 0.82, 1.24, 2.5]))
    assert lines_of(decode_ax)["full"] == (budgets, pytest.approx([19.5, 19.0, 18.0, 15.0]))
    image = pixels(path)  # lines sorted by name: full C0, hired C1, random C2
    row, col = pixel_of(ttft_ax, 1.0, 2.5, image.shape[0])  # random's last marker
    assert near_colour(image[row - 2 : row + 3, col - 2 : col + 3], TAB["C2"]).any()
    for colour in TAB.values():
        assert near_colour(image, colour).sum() > 50


def test_memory_against_budget_with_cap(tmp_path, drawn):
    rows = [*ROWS, {"strategy": "hired", "budget": 0.3, "peak_rss_mib": None}]  # skipped
    path = plot_memory_vs_budget(rows, tmp_path / "memory.png", cap_mib=7000, size_px=(640, 480))
    assert_png(path, (640, 480))
    (ax,) = drawn[0].axes
    lines = lines_of(ax)
    budgets = [0.1, 0.2, 0.4, 1.0]  # no point at 0.3: that row has no memory figure
    assert lines["hired: peak_rss_mib"] == (budgets, [5150.0, 5300.0, 5600.0, 6500.0])
    assert lines["random: peak_rss_mib"] == (budgets, [5350.0, 5500.0, 5800.0, 6700.0])
    assert lines["memory cap 7000 MiB"][1] == [7000, 7000]
    image = pixels(path)
    red_rows = np.flatnonzero(near_colour(image, "#ff0000", tol=40).sum(axis=1) > 100)
    cap_row, _ = pixel_of(ax, 0.5, 7000, image.shape[0])
    assert len(red_rows) and abs(red_rows.mean() - cap_row) <= 1.5  # the cap, drawn at 7000 MiB
    row, col = pixel_of(ax, 1.0, 6500, image.shape[0])  # hired's marker at budget 1.0
    assert near_colour(image[row - 2 : row + 3, col - 2 : col + 3], TAB["C1"]).any()


def test_a_blank_figure_fails_the_pixel_checks(tmp_path):
    """The checks above can fail: an empty Agg figure has none of the series' colours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots(1, 1)
    figure.savefig(tmp_path / "blank.png")
    image = pixels(tmp_path / "blank.png")
    assert not any(near_colour(image, colour).any() for colour in (*TAB.values(), "#ff0000"))


def test_a_column_no_row_has_is_rejected(tmp_path):
    with pytest.raises(InvalidArgumentError, match="'tokens_per_joule'"):
        plot_vs_budget(ROWS, "budget", ["tokens_per_joule"], tmp_path / "x.png")
    with pytest.raises(InvalidArgumentError, match="at least one"):
        plot_memory_vs_budget([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import` sees when not installed
    with pytest.raises(PlottingUnavailable, match="pip install matplotlib") as caught:
        plot_timeline(jetson_like_report(), tmp_path / "t.png")
    assert isinstance(caught.value, EdgeHiredError)
    assert not (tmp_path / "t.png").exists()
