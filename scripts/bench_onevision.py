"""CPU TTFT of a OneVision-shaped model, full vs HiRED 20%, side by side.

    .venv/bin/python scripts/bench_onevision.py [--size 768x768] [--repeats 3]

The model is the `mid-llava-onevision` preset (random weights, built once into the cache): the
SigLIP-so400m geometry and width (384/14, 729 tokens, 1152 wide) with 8 of its layers, and a
Qwen2-0.5B-shaped LLM, bf16. Settings run interleaved after a warm-up; medians are printed with
the CPU pressure seen during the runs (/proc/pressure/cpu), since other load skews them.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test helpers' images, as `scripts/...py` runs
from tests.helpers import PROMPT, textured_image  # noqa: E402

SETTINGS = {"full": SelectionOptions(strategy="full"), "hired 20%": SelectionOptions(ratio=0.2)}
SAMPLING = SamplingOptions(max_new_tokens=8)


def cpu_pressure() -> float:
    """avg10 of /proc/pressure/cpu 'some' (percent of time tasks waited for a CPU)."""
    path = Path("/proc/pressure/cpu")
    if not path.exists():
        return float("nan")
    return float(path.read_text().split()[1].split("=")[1])


def measure(pipeline: Pipeline, size: tuple[int, int], repeats: int) -> dict[str, list]:
    """Per setting: the RunResults of `repeats` interleaved runs (after one warm-up each)."""
    image = textured_image(*size, seed=0)
    runs = {
        name: partial(pipeline.run, image, PROMPT, options, SAMPLING)
        for name, options in SETTINGS.items()
    }
    return interleaved(runs, repeats)


def report(runs: dict[str, list]) -> str:
    """A Markdown table: visual tokens, TTFT, encode, prefill, decode; the full / 20% ratio."""

    def median(name: str, figure) -> float:
        return statistics.median(figure(r) for r in runs[name])

    rows = [
        ("visual tokens", lambda r: r.visual_tokens_kept),
        ("TTFT s", lambda r: r.ttft_s),
        ("encode s", lambda r: r.timings_s["encode"]),
        ("prefill to first token s", lambda r: r.timings_s["prefill_to_first_token"]),
        ("decode tokens/s", lambda r: r.decode_tokens_per_s),
    ]
    lines = ["| | full | HiRED 20% | full / 20% |", "|---|---|---|---|"]
    for label, figure in rows:
        full, cut = median("full", figure), median("hired 20%", figure)
        lines.append(f"| {label} | {full:.3g} | {cut:.3g} | {full / cut:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x768", help="image HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    pipeline = Pipeline.from_pretrained(str(default_checkpoint("mid-llava-onevision")), "cpu")
    before = cpu_pressure()
    runs = measure(pipeline, size, args.repeats)
    result = runs["full"][0]
    print(
        f"image {size[0]}x{size[1]}, grid {result.grid}, signal {result.signal}, "
        f"{result.visual_tokens_total} visual tokens at 100%, bf16, {args.repeats} repeats"
    )
    print(report(runs))
    print(f"cpu pressure avg10: {before:.1f}% before, {cpu_pressure():.1f}% after")


if __name__ == "__main__":
    main()
