"""CPU TTFT of the tiled families' mid presets: full, HiRED 20%, resize baseline; encoder share.

    .venv/bin/python scripts/bench_tiled.py [--preset mid-internvl|mid-smolvlm|both]
                                            [--size 448x1344] [--repeats 3]

`mid-internvl` is InternVL3-2B-shaped and `mid-smolvlm` SmolVLM2-2.2B-shaped, each at a third of
its depth (random weights, bf16, built once into the cache). On these models the vision encoder
is a large fixed cost: HiRED drops tokens after it, so it shortens the LLM's prefill only, and
the encoder's share of TTFT bounds the gain. Settings run interleaved after a warm-up; medians
are printed with the CPU pressure seen during the runs (/proc/pressure/cpu).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

from edge_hired.bench.interleave import interleaved
from edge_hired.models.tiny import default_checkpoint
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.runtime.tiled_knob import token_knob_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test helpers' images, as `scripts/...py` runs
from tests.helpers import PROMPT, textured_image  # noqa: E402

SETTINGS = {"full": SelectionOptions(strategy="full"), "hired 20%": SelectionOptions(ratio=0.2)}
RESIZE = "resize <= 20%"  # the family's own knob, every token of the smaller layout
SAMPLING = SamplingOptions(max_new_tokens=4)
PRESETS = ("mid-internvl", "mid-smolvlm")


def cpu_pressure() -> float:
    """avg10 of /proc/pressure/cpu 'some' (percent of time tasks waited for a CPU)."""
    path = Path("/proc/pressure/cpu")
    if not path.exists():
        return float("nan")
    return float(path.read_text().split()[1].split("=")[1])


def measure(pipeline: Pipeline, size: tuple[int, int], repeats: int) -> dict[str, list]:
    """Per setting: the RunResults of `repeats` interleaved runs (after one warm-up each).

    The resize baseline (`--strategy resize`) runs the same weights with the knob that sends at
    most HiRED's budget.
    """
    image = textured_image(*size, seed=0)
    budget = pipeline.facts.geometry_for(size).num_tokens // 5
    settings = {**SETTINGS, RESIZE: SelectionOptions(strategy="resize", tokens=budget)}
    runs = {
        name: partial(pipeline.run, image, PROMPT, options, SAMPLING)
        for name, options in settings.items()
    }
    knob = token_knob_for(pipeline, size, budget)
    print(f"resize baseline: knob {knob} (max_patches / longest_edge) for <= {budget} tokens")
    return interleaved(runs, repeats)


def report(runs: dict[str, list]) -> str:
    """A Markdown table of medians: tokens, TTFT, encode, its share, prefill; full / 20%."""

    def median(name: str, figure) -> float:
        return statistics.median(figure(r) for r in runs[name])

    rows = [
        ("visual tokens", lambda r: r.visual_tokens_kept),
        ("LLM input tokens", lambda r: r.llm_input_tokens),
        ("TTFT s", lambda r: r.ttft_s),
        ("encode s", lambda r: r.timings_s["encode"]),
        ("encoder share of TTFT", lambda r: r.timings_s["encode"] / r.ttft_s),
        ("prefill to first token s", lambda r: r.timings_s["prefill_to_first_token"]),
    ]
    lines = [
        f"| | full | HiRED 20% | {RESIZE} | full / HiRED | full / resize |",
        "|---|---|---|---|---|---|",
    ]
    for label, figure in rows:
        full, cut, resized = (median(n, figure) for n in ("full", "hired 20%", RESIZE))
        lines.append(
            f"| {label} | {full:.3g} | {cut:.3g} | {resized:.3g} | {full / cut:.2f}x "
            f"| {full / resized:.2f}x |"
        )
    return "\n".join(lines)


def bench(preset: str, size: tuple[int, int], repeats: int) -> None:
    """Load the preset's cached checkpoint, measure, print its table."""
    pipeline = Pipeline.from_pretrained(str(default_checkpoint(preset)), "cpu")
    before = cpu_pressure()
    runs = measure(pipeline, size, repeats)
    result = runs["full"][0]
    print(
        f"\n{preset}: image {size[0]}x{size[1]}, grid {result.grid}, signal {result.signal}, "
        f"{result.visual_tokens_total} visual tokens at 100%, {result.compute_dtype}, "
        f"{repeats} repeats"
    )
    print(report(runs))
    print(f"cpu pressure avg10: {before:.1f}% before, {cpu_pressure():.1f}% after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="both", choices=[*PRESETS, "both"])
    parser.add_argument("--size", default="448x1344", help="image HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = (int(args.size.split("x")[0]), int(args.size.split("x")[1]))
    for preset in PRESETS if args.preset == "both" else (args.preset,):
        bench(preset, size, args.repeats)


if __name__ == "__main__":
    main()
