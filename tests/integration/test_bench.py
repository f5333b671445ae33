"""`edge-hired bench` / `run_bench` on the tiny model and a tiny bundle, and bench_cpu's smoke run.

One library run (the checkpoint, default sample image: 5 partitions) and one CLI run (a bundle,
--images with a 336x336 picture: 3 partitions) are shared by the tests: budgets full and 0.2 x
strategies hired and spatial, 2 repeats after 1 warm-up round, 2 new tokens.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edge_hired.bench.options import BenchOptions, load_device_profile, profile_facts, settings_for
from edge_hired.bench.report import plot_rows
from edge_hired.bench.runner import run_bench
from edge_hired.cli.main import main
from edge_hired.data import sample_image_path
from edge_hired.device.contention import CpuPressure, read_cpu_pressure, stall_pct
from edge_hired.errors import InvalidArgumentError
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.sweep import parse_budgets
from tests.helpers import textured_image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["full", "hired@0.2", "spatial@0.2"]
PNGS = ("latency_vs_budget.png", "memory_vs_budget.png", "timeline.png")
OPTIONS = BenchOptions(
    budgets=("full", 0.2),
    strategies=("hired", "spatial"),
    repeats=2,
    warmup=1,
    max_new_tokens=2,
    progress=False,
)


@pytest.fixture(scope="module")
def pipeline(tiny_next_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu")


@pytest.fixture(scope="module")
def library_out(pipeline: Pipeline, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-lib")
    run_bench(pipeline, OPTIONS, out)
    return out


@pytest.fixture(scope="module")
def bundle_out(tiny_next_dir: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench-bundle")
    options = ExportOptions(quantization="none", dtype="fp32", measure_memory=False)
    export_bundle(str(tiny_next_dir), root / "bundle", options)
    (root / "images").mkdir()
    textured_image(336, 336).save(root / "images" / "square.png")
    code = main(
        [
            "bench",
            "--bundle",
            str(root / "bundle"),
            "--images",
            str(root / "images"),
            "--budgets",
            "full,0.2",
            "--strategies",
            "hired,spatial",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--max-new-tokens",
            "2",
            "--no-progress",
            "--profile",
            "cpu",
            "--out",
            str(root / "out"),
        ]
    )
    assert code == 0
    return root / "out"


@pytest.fixture(params=["library", "cli-bundle"])
def out_dir(request) -> Path:
    return request.getfixturevalue(
        {"library": "library_out", "cli-bundle": "bundle_out"}[request.param]
    )


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_files_exist_and_pngs_open(out_dir: Path) -> None:
    for name in ("results.csv", "results.json", "timeline.json", *PNGS):
        assert (out_dir / name).is_file(), name
    for name in PNGS:
        with Image.open(out_dir / name) as image:
            image.verify()
        with Image.open(out_dir / name) as image:
            assert image.format == "PNG" and image.size == (1200, 800)


#: The results.csv header users' scripts read, written out here by hand (not taken from the code).
CSV_HEADER = (
    "setting,strategy,budget_label,budget,runs,images,"
    "visual_tokens_total,visual_tokens_kept,kept_share,llm_input_tokens,new_tokens,"
    "ttft_s,ttft_s_min,ttft_s_max,prefill_s,preprocess_s,encode_s,select_s,decode_s,"
    "decode_tokens_per_s,e2e_s,"
    "peak_memory_mib,memory_source,peak_rss_mib,rss_before_mib,cuda_peak_mib,device_peak_mib,"
    "telemetry_peak_mib,"
    "energy_j,cpu_some_avg10_max,cpu_stall_pct_median,cpu_stall_pct_max,process_cores,"
    "profile,profile_cap_tokens,device"
)


def test_csv_has_every_column_and_one_row_per_setting(out_dir: Path) -> None:
    text = (out_dir / "results.csv").read_text()
    assert text.splitlines()[0] == CSV_HEADER
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["setting"], r["strategy"], r["budget_label"]) for r in rows] == [
        ("full", "full", "full"),
        ("hired@0.2", "hired", "0.2"),
        ("spatial@0.2", "spatial", "0.2"),
    ]
    assert [float(r["budget"]) for r in rows] == [1.0, 0.2, 0.2]
    # 336x336 on pinpoint 336x672: 576 + 24 of 48 stitched columns x 24 rows, 3 partitions;
    # the 800x560 sample on 672x672: 576 + 34 of 48 stitched rows (7 cut each side) x 48, 5.
    images = results(out_dir)["options"]["images"]
    partitions, valid = (3, 576 + 24 * 24) if images else (5, 576 + 34 * 48)
    for row in rows:
        assert (row["runs"], row["images"], float(row["new_tokens"])) == ("2", "1", 2.0)
        assert (row["memory_source"], row["device"]) == ("peak_rss_mib", "cpu")
        assert row["cuda_peak_mib"] == row["device_peak_mib"] == row["energy_j"] == ""  # None
        assert float(row["ttft_s_min"]) <= float(row["ttft_s"]) <= float(row["ttft_s_max"])
        assert float(row["visual_tokens_total"]) == valid
    assert float(rows[0]["visual_tokens_kept"]) == valid
    for row in rows[1:]:
        assert float(row["visual_tokens_kept"]) == math.floor(0.2 * partitions * 576)
    data = results(out_dir)
    assert data["columns"] == CSV_HEADER.split(",")
    for csv_row, json_row in zip(rows, data["rows"], strict=True):  # the same numbers, unrounded
        for key, value in json_row.items():
            if isinstance(value, float):
                assert float(csv_row[key]) == value, key


def test_values_are_sane(out_dir: Path, pipeline: Pipeline) -> None:
    data = results(out_dir)
    size = (336, 336) if data["options"]["images"] else Image.open(sample_image_path()).size
    geometry = pipeline.parts.facts.geometry_for((size[1], size[0]))
    partitions, valid = geometry.num_partitions, int(geometry.valid_counts().sum())
    assert partitions == (3 if data["options"]["images"] else 5)
    rows = {r["setting"]: r for r in data["rows"]}
    for name in ("hired@0.2", "spatial@0.2"):
        assert rows[name]["visual_tokens_kept"] == math.floor(0.2 * partitions * 576)
        assert rows[name]["budget"] == 0.2
    assert rows["full"]["visual_tokens_kept"] == valid and rows["full"]["budget"] == 1.0
    for row in rows.values():
        assert row["runs"] == 2 and row["new_tokens"] == 2
        assert 0 < row["prefill_s"] < row["ttft_s"] <= row["e2e_s"]
        assert row["ttft_s_min"] <= row["ttft_s"] <= row["ttft_s_max"]
        assert row["decode_tokens_per_s"] > 0
        assert row["memory_source"] == "peak_rss_mib" and row["device"] == "cpu"
        assert row["peak_memory_mib"] == row["peak_rss_mib"] > 0
        assert row["cuda_peak_mib"] is None and row["energy_j"] is None  # CPU, psutil: no power
        assert row["llm_input_tokens"] > row["visual_tokens_kept"]
    assert rows["full"]["llm_input_tokens"] > rows["hired@0.2"]["llm_input_tokens"]


#: Per-run figures whose row figure is their median (of two runs here: their mean).
PER_RUN = [
    "visual_tokens_total",
    "visual_tokens_kept",
    "kept_share",
    "llm_input_tokens",
    "new_tokens",
    "ttft_s",
    "prefill_s",
    "preprocess_s",
    "encode_s",
    "select_s",
    "decode_s",
    "decode_tokens_per_s",
    "e2e_s",
    "peak_memory_mib",
    "peak_rss_mib",
    "rss_before_mib",
    "cuda_peak_mib",
    "telemetry_peak_mib",
    "energy_j",
    "process_cores",
]


def test_rows_are_the_medians_of_the_recorded_runs(out_dir: Path) -> None:
    data = results(out_dir)
    for row in data["rows"]:
        first, second = [r for r in data["runs"] if r["setting"] == row["setting"]]
        for key in PER_RUN:
            a, b = first[key], second[key]
            if a is None or b is None:  # a figure missing from a run: the other run's, or none
                assert row[key] == (b if a is None else a), key
            else:
                assert row[key] == pytest.approx((a + b) / 2, rel=1e-12), key
        assert row["ttft_s_min"] == min(first["ttft_s"], second["ttft_s"])
        assert row["ttft_s_max"] == max(first["ttft_s"], second["ttft_s"])


def test_settings_run_round_robin_after_the_warm_up(out_dir: Path) -> None:
    data = results(out_dir)
    assert data["warmup_order"] == SETTINGS
    assert data["run_order"] == SETTINGS * 2
    assert [r["setting"] for r in data["runs"]] == SETTINGS * 2
    assert [r["order"] for r in data["runs"]] == list(range(6))
    assert [r["round"] for r in data["runs"]] == [1, 1, 1, 2, 2, 2]


def test_cpu_contention_is_recorded_per_run(out_dir: Path) -> None:
    if read_cpu_pressure() is None:
        pytest.skip("no /proc/pressure/cpu on this kernel")
    for run in results(out_dir)["runs"]:
        assert run["cpu_some_avg10"] >= 0 and run["cpu_stall_pct"] >= 0
        assert run["process_cores"] > 0
    for row in results(out_dir)["rows"]:
        assert row["cpu_stall_pct_max"] >= row["cpu_stall_pct_median"] >= 0


def test_timeline_is_the_first_run_of_the_smallest_budget(library_out: Path) -> None:
    timeline = json.loads((library_out / "timeline.json").read_text())
    names = [p["name"] for p in timeline["phases"]]
    assert names == ["preprocess", "encode", "select", "prefill", "decode"]
    first = next(r for r in results(library_out)["runs"] if r["setting"] == "hired@0.2")
    duration = timeline["phases"][-1]["end_s"] - timeline["phases"][0]["start_s"]
    assert timeline["phases"][0]["start_s"] == 0
    assert duration == pytest.approx(first["ttft_s"] + first["decode_s"], abs=1e-3)


def test_environment_and_options_are_recorded(library_out: Path) -> None:
    data = results(library_out)
    assert data["environment"]["memory_source"] == "peak_rss_mib"
    assert data["environment"]["telemetry"].startswith("psutil")
    assert data["options"]["repeats"] == 2 and data["options"]["budgets"] == ["full", 0.2]
    assert {r["profile"] for r in data["rows"]} == {None}


def test_cli_records_the_profile(bundle_out: Path) -> None:
    data = results(bundle_out)
    assert {r["profile"] for r in data["rows"]} == {"cpu"}
    assert data["environment"]["profile"] == "cpu" and data["environment"]["profile_note"]


def test_profile_name_is_recorded_without_the_planner(pipeline, monkeypatch) -> None:
    """Without a bundle or model source the planner is never called: only the name is kept."""
    import edge_hired.bench.options as bench_options

    def no_planner(*args, **kwargs):
        raise AssertionError("the planner ran without a source")

    monkeypatch.setattr(bench_options, "plan_for_pipeline", no_planner)
    facts = profile_facts(load_device_profile("cpu"), pipeline, images=[sample_image_path()])
    assert facts == {
        "profile": "cpu",
        "profile_cap_tokens": None,
        "profile_caps": {},
        "profile_note": (
            "name recorded only: no bundle or model source to plan from (BenchOptions.source)"
        ),
    }
    assert profile_facts(None, pipeline)["profile"] is None


def test_settings_and_budget_parsing() -> None:
    assert parse_budgets("full, 0.4,0.1") == ("full", 0.4, 0.1)
    options = BenchOptions(budgets=("full", 0.2, 0.2), strategies=("prumerge", "hired"))
    assert [s.label for s in settings_for(options)] == ["full", "hired@0.2", "prumerge@adaptive"]
    for bad in ("", "0", "1.5", "nan", "half"):
        with pytest.raises(InvalidArgumentError):
            parse_budgets(bad)


def test_plot_rows_start_every_strategy_at_full() -> None:
    rows = [
        {"strategy": "full", "budget": 1.0},
        {"strategy": "hired", "budget": 0.2},
        {"strategy": "spatial", "budget": 0.2},
    ]
    lines = {(r["strategy"], r["budget"]) for r in plot_rows(rows)}
    assert lines == {("hired", 0.2), ("spatial", 0.2), ("hired", 1.0), ("spatial", 1.0)}


def test_cpu_pressure_parsing(tmp_path: Path) -> None:
    path = tmp_path / "cpu"
    path.write_text(
        "some avg10=12.50 avg60=3.00 avg300=1.00 total=2500000\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert read_cpu_pressure(path) == CpuPressure(12.5, 2_500_000)
    assert read_cpu_pressure(tmp_path / "missing") is None
    assert stall_pct(CpuPressure(0, 1_000_000), CpuPressure(0, 1_500_000), 2.0) == 25.0
    assert stall_pct(None, CpuPressure(0, 1), 1.0) is None


def test_bad_options_raise_typed_errors(pipeline: Pipeline, tmp_path: Path) -> None:
    for options in (
        BenchOptions(repeats=0),
        BenchOptions(strategies=("full",)),
        BenchOptions(strategies=("nope",)),
        BenchOptions(prompt=" "),
    ):
        with pytest.raises(InvalidArgumentError):
            run_bench(pipeline, options, tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--budgets", "full,1.5"],
        ["--strategies", "hired,nope"],
        ["--strategies", "full"],
        ["--repeats", "0"],
        ["--images", "EMPTY_DIR"],
        ["--profile", "no-such-device"],
    ],
)
def test_cli_user_errors_are_one_line_exit_2(argv, tiny_next_dir, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty") if a == "EMPTY_DIR" else a for a in argv]
    try:
        code = main(["bench", "--model", str(tiny_next_dir), "--out", str(tmp_path / "o"), *argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "error" in err
    assert not (tmp_path / "o").exists()


def test_cli_needs_a_model_or_a_bundle(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--model" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_cpu_quick_smoke_run() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_cpu.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for text in (
        "TTFT full / TTFT 20%",
        "decode tok/s 20% / full",
        "HiRED select / encode",
        "pipeline encoder / stock encoder",
        "peak RSS full / 20%",
        "CPU pressure at the",
        "wall time:",
        "2 measured rounds",
    ):
        assert text in out, text
