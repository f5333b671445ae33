"""Benchmark what token budgets cost: TTFT, prefill, decode rate, latency, memory and energy.

The bench answers the question behind the paper's Table 4 on the machine at hand: how much
faster and lighter does a request get when HiRED (or another strategy) keeps only a share of the
visual tokens? `run_bench(pipeline, BenchOptions(...), out_dir)` is the library call behind
`edge-hired bench`. Every setting (a budget ratio x a strategy; "full" runs once, with strategy
full; adaptive strategies such as PruMerge run once, they choose their own count) is run
round-robin: round r runs every setting once, so drift and other load hit all settings alike.
Warm-up rounds come first and are not recorded. A row per setting holds the medians over its
measured runs; every run is also kept, so each median can be recomputed from `results.json`.

Modules: `options` (what to measure, settings, schedule, profile), `measure` (one request and
how each figure is taken), `report` (rows, table, results.csv/json, plots), `runner`
(`run_bench`). The CPU pressure, heap and CUDA readings live in `edge_hired.device.contention`.
"""

from edge_hired.bench.measure import (
    TIMINGS,
    FixedLength,
    MemorySource,
    RequestContext,
    choose_memory_source,
    measure_request,
    warm_up,
)
from edge_hired.bench.options import (
    ADAPTIVE,
    FULL,
    IMAGE_SUFFIXES,
    BenchOptions,
    Setting,
    Slot,
    check_options,
    check_strategies,
    image_paths,
    load_device_profile,
    parse_budgets,
    parse_strategies,
    profile_facts,
    schedule,
    settings_for,
)
from edge_hired.bench.report import (
    COLUMNS,
    FORMAT,
    MEDIAN_KEYS,
    PLOTS,
    TABLE,
    BenchReport,
    add_telemetry,
    environment,
    first_run_timeline,
    median_or_none,
    plot_rows,
    representative,
    request_timeline,
    summarise,
    write_plots,
    write_results,
)
from edge_hired.bench.runner import run_bench
from edge_hired.device.contention import (
    PRESSURE_FILE,
    CpuPressure,
    cuda_peak_mib,
    read_cpu_pressure,
    release_free_heap,
    reset_cuda_peak,
    stall_pct,
    synchronize,
)

__all__ = [
    "ADAPTIVE",
    "COLUMNS",
    "FORMAT",
    "FULL",
    "IMAGE_SUFFIXES",
    "MEDIAN_KEYS",
    "PLOTS",
    "PRESSURE_FILE",
    "TABLE",
    "TIMINGS",
    "BenchOptions",
    "BenchReport",
    "CpuPressure",
    "FixedLength",
    "MemorySource",
    "RequestContext",
    "Setting",
    "Slot",
    "add_telemetry",
    "check_options",
    "check_strategies",
    "choose_memory_source",
    "cuda_peak_mib",
    "environment",
    "first_run_timeline",
    "image_paths",
    "load_device_profile",
    "measure_request",
    "median_or_none",
    "parse_budgets",
    "parse_strategies",
    "plot_rows",
    "profile_facts",
    "read_cpu_pressure",
    "release_free_heap",
    "representative",
    "request_timeline",
    "reset_cuda_peak",
    "run_bench",
    "schedule",
    "settings_for",
    "stall_pct",
    "summarise",
    "synchronize",
    "warm_up",
    "write_plots",
    "write_results",
]
