"""CPU TTFT of a Qwen3-VL-2B-shaped model: full vs HiRED 20% vs DART 20% vs resize 20%.

    .venv/bin/python scripts/bench_qwen.py [--size 448x672] [--repeats 3]

The model is the `mid-qwen3-vl` preset (random weights, built once into the cache): Qwen3-VL-2B's
24-block 1024-wide tower with DeepStack [5, 11, 17] and its 28-layer 2048-wide LLM (1k vocab),
bf16. The encoder runs on the whole image in every setting (HiRED and DART select after it; the
resize baseline encodes the image shrunk to the budget), so the encoder's share of TTFT bounds
what dropping can save. Settings run interleaved after a warm-up; medians are printed with the
CPU pressure seen during the runs (/proc/pressure/cpu), since other load skews them; the
process's CPU seconds per request (`time.process_time`, all its threads) are printed beside the
wall-clock figures, as they move far less when other processes take the cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from edge_hired.bench.interleave import interleaved
from edge_hired.models.tiny import default_checkpoint
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test helpers' images, as `scripts/...py` runs
from tests.helpers import PROMPT, textured_image  # noqa: E402

SETTINGS = {
    "full": SelectionOptions(strategy="full"),
    "hired 20%": SelectionOptions(ratio=0.2),
    "dart 20%": SelectionOptions(strategy="dart", ratio=0.2),
    "resize 20%": SelectionOptions(strategy="resize", ratio=0.2),
}
SAMPLING = SamplingOptions(max_new_tokens=4)
ROWS = (
    ("visual tokens", lambda r: r.visual_tokens_kept),
    ("TTFT s", lambda r: r.ttft_s),
    ("encode s", lambda r: r.timings_s["encode"]),
    ("encoder share of TTFT", lambda r: r.timings_s["encode"] / r.ttft_s),
    ("prefill to first token s", lambda r: r.timings_s["prefill_to_first_token"]),
    ("CPU s per request (process time)", lambda r: r.cpu_s),
)


def cpu_pressure() -> float:
    """avg10 of /proc/pressure/cpu 'some' (percent of time tasks waited for a CPU)."""
    path = Path("/proc/pressure/cpu")
    if not path.exists():
        return float("nan")
    return float(path.read_text().split()[1].split("=")[1])


class Timed:
    """A RunResult and the process CPU seconds of the whole request."""

    def __init__(self, result, cpu_s: float) -> None:
        self.result, self.cpu_s = result, cpu_s

    def __getattr__(self, name: str):
        return getattr(self.result, name)


def timed_run(pipeline: Pipeline, image, options: SelectionOptions) -> Timed:
    start = time.process_time()
    result = pipeline.run(image, PROMPT, options, SAMPLING)
    return Timed(result, time.process_time() - start)


def measure(pipeline: Pipeline, size: tuple[int, int], repeats: int) -> dict[str, list]:
    """Per setting: the timed results of `repeats` interleaved runs (after one warm-up each)."""
    image = textured_image(*size, seed=0)
    runs = {
        name: partial(timed_run, pipeline, image, options) for name, options in SETTINGS.items()
    }
    return interleaved(runs, repeats)


def encoder_cpu_s(pipeline: Pipeline, size: tuple[int, int]) -> float:
    """Process CPU seconds of preprocessing and encoding the whole image once."""
    image = textured_image(*size, seed=0)
    start = time.process_time()
    pipeline.encode(pipeline.preprocess(image)[0])
    return time.process_time() - start


def report(runs: dict[str, list]) -> str:
    """A Markdown table of medians, and each setting's TTFT ratio to full."""
    names = list(SETTINGS)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, figure in ROWS:
        values = [statistics.median(figure(r) for r in runs[name]) for name in names]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    full = statistics.median(r.ttft_s for r in runs["full"])
    ratios = [full / statistics.median(r.ttft_s for r in runs[name]) for name in names]
    lines.append("| TTFT full / setting | " + " | ".join(f"{v:.2f}x" for v in ratios) + " |")
    full = statistics.median(r.cpu_s for r in runs["full"])
    ratios = [full / statistics.median(r.cpu_s for r in runs[name]) for name in names]
    lines.append("| CPU s full / setting | " + " | ".join(f"{v:.2f}x" for v in ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="448x672", help="image HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bf16", help="compute dtype (default bf16)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    checkpoint = str(default_checkpoint("mid-qwen3-vl"))
    pipeline = Pipeline.from_pretrained(checkpoint, "cpu", args.dtype)
    before = cpu_pressure()
    runs = measure(pipeline, size, args.repeats)
    result = runs["full"][0]
    print(
        f"image {size[0]}x{size[1]}, grid {result.grid}, signal {result.signal}, "
        f"{result.visual_tokens_total} visual tokens at 100%, "
        f"{result.compute_dtype}, {args.repeats} repeats"
    )
    print(report(runs))
    encoder = encoder_cpu_s(pipeline, size)
    full_cpu = statistics.median(r.cpu_s for r in runs["full"])
    print(f"encoder (whole image) CPU s: {encoder:.3g}, {encoder / full_cpu:.0%} of full's request")
    print(f"cpu pressure avg10: {before:.1f}% before, {cpu_pressure():.1f}% after")


if __name__ == "__main__":
    main()
