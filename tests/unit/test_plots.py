"""Plots: each writes a PNG of the requested pixel size; missing matplotlib is a clear error."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from edge_hired.device.plots import (
    PlottingUnavailable,
    plot_memory_vs_budget,
    plot_timeline,
    plot_vs_budget,
)
from edge_hired.device.telemetry import POWER_KEY, Phase, Sample, TelemetryReport
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
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size


def test_timeline_png_has_the_requested_size(tmp_path):
    path = plot_timeline(jetson_like_report(), tmp_path / "plots" / "timeline.png", (900, 600))
    assert path == tmp_path / "plots" / "timeline.png"
    assert_png(path, (900, 600))


def test_timeline_without_power_still_plots_memory(tmp_path):
    path = plot_timeline(jetson_like_report(power=False), tmp_path / "t.png")
    assert_png(path, (1200, 800))


def test_metrics_against_budget_per_strategy(tmp_path):
    path = plot_vs_budget(
        ROWS,
        "budget",
        ["ttft_s", "decode_tokens_per_s"],
        tmp_path / "vs_budget.png",
        size_px=(1000, 700),
    )
    assert_png(path, (1000, 700))


def test_memory_against_budget_with_cap(tmp_path):
    rows = [*ROWS, {"strategy": "hired", "budget": 0.3, "peak_rss_mib": None}]  # skipped
    path = plot_memory_vs_budget(rows, tmp_path / "memory.png", cap_mib=7000, size_px=(640, 480))
    assert_png(path, (640, 480))


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
