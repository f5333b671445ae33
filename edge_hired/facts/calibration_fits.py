"""From the calibration probes' raw results to the figures of the `[calibration]` section.

Timings: the median per setting first (one contended run does not pull a fit), then least
squares — prefill `a + b*n + c*n^2` over the LLM input tokens, decode per token a line over
the context, preprocess and encoder lines over the partitions (through the origin when the model
has one layout only). Prefill memory: the slope of the peak between a short and a long prefill,
less the KV cache the planner counts exactly.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from edge_hired.planner.fits import fit_polynomial
from edge_hired.planner.inputs import PlanInputs
from edge_hired.units import KIB, MIB


def medians(runs: Sequence[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    """(distinct x, median y at each) over the runs, x ascending."""
    groups: dict[float, list[float]] = defaultdict(list)
    for run in runs:
        groups[run[x]].append(run[y])
    xs = sorted(groups)
    return xs, [statistics.median(groups[value]) for value in xs]


def line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """a + b*x by least squares, or through the origin when there is one x only."""
    if len(set(xs)) == 1:
        return 0.0, statistics.fmean(ys) / xs[0]
    a, b = fit_polynomial(xs, ys, 1)
    return a, b


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(f"{value:.6g}") for value in values)


def fit_timings(runs: Sequence[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
    """The four fits of the section from the timing step's runs."""
    timed = [run for run in runs if run["new_tokens"] > 1]
    decode = [
        {"context": r["llm_input_tokens"] + r["new_tokens"] / 2,
         "per_token": r["decode_s"] / (r["new_tokens"] - 1)}
        for r in timed
    ]  # fmt: skip
    largest = max(run["partitions"] for run in runs)
    prefill = medians([run for run in runs if run["partitions"] == largest], "llm_input_tokens",
                      "prefill_s")  # fmt: skip
    return {
        "preprocess_s": _rounded(line_fit(*medians(runs, "partitions", "preprocess_s"))),
        "encoder_s": _rounded(line_fit(*medians(runs, "partitions", "encoder_s"))),
        "prefill_s": _rounded(fit_polynomial(*prefill, 2)),
        "decode_s_per_token": _rounded(line_fit(*medians(decode, "context", "per_token"))),
    }


def prefill_kib_per_token(inputs: PlanInputs, measured: dict[str, Any]) -> float:
    """Activation bytes per LLM token above the KV cache: the slope between the two prefills."""
    short, long = measured["prefill_short"], measured["prefill_long"]
    slope = (long["above_mib"] - short["above_mib"]) * MIB / (long["tokens"] - short["tokens"])
    kv = inputs.kv_bytes_per_token * (1 + 1 / inputs.llm.num_layers)
    return round(max(0.0, slope - kv) / KIB, 2)
