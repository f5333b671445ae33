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
