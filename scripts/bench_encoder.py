"""Encoder cost of HiRED's CLS rows: CLS-row path vs a plain pass vs `output_attentions=True`.

Runs a ViT-L/14-336-shaped random-weight CLIP (the `vitl-llava-next` preset) on the 5
partitions of a 672x672 image, fp32, CPU:
- time: all three modes in one process, interleaved round-robin after a warm-up, medians;
- memory: each mode in a fresh process (so its RSS high-water mark is its own): the peak during
  one pass, and that peak minus the RSS with the model already loaded.

    .venv/bin/python scripts/bench_encoder.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("plain", "cls-rows", "attentions")


def load():
    """The preset through the same path as any checkpoint, plus a 5-partition input."""
    from PIL import Image

    from edge_hired.models.tiny import default_checkpoint
    from edge_hired.runtime.pipeline import Pipeline

    pipeline = Pipeline.from_pretrained(str(default_checkpoint("vitl-llava-next")), device="cpu")
    pixels, geometry = pipeline.preprocess(Image.new("RGB", (672, 672), (120, 80, 40)))
    assert geometry.num_partitions == 5
    return pipeline, pixels


def encoder_pass(mode: str, pipeline, pixels) -> None:
    """One encoder call in the given mode."""
    import torch

    tower = pipeline.model.model.vision_tower
    tower.set_attn_implementation("eager" if mode == "attentions" else "sdpa")
    if mode == "cls-rows":
        pipeline.encode(pixels)
        return
    with torch.inference_mode():
        tower(pixels, output_hidden_states=True, output_attentions=mode == "attentions")


def time_interleaved(repeats: int) -> dict[str, list[float]]:
    """Wall time per mode, round-robin so drift and contention hit every mode alike."""
    pipeline, pixels = load()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for mode in MODES:
        encoder_pass(mode, pipeline, pixels)  # warm-up
    for _ in range(repeats):
        for mode in MODES:
            start = time.perf_counter()
            encoder_pass(mode, pipeline, pixels)
            times[mode].append(time.perf_counter() - start)
    return times


def memory_of(mode: str) -> dict[str, float]:
    """In this (fresh) process: RSS once loaded, and the peak of one pass."""
    from edge_hired.device.memory import current_rss_mib, peak_rss_mib, reset_peak_rss

    pipeline, pixels = load()
    loaded = current_rss_mib()
    reset_peak_rss()
    encoder_pass(mode, pipeline, pixels)
    return {"loaded_mib": loaded, "peak_mib": peak_rss_mib()}


def cpu_pressure() -> str:
    """`some avg10` of /proc/pressure/cpu."""
    try:
        return Path("/proc/pressure/cpu").read_text().split()[1]
    except (OSError, IndexError):
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-of", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of)))
        return
    memory = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--memory-of", mode, "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        memory[mode] = json.loads(out.strip().splitlines()[-1])
    times = time_interleaved(args.repeats)
    report(memory, times)


def report(memory: dict, times: dict[str, list[float]]) -> None:
    """The table, the ratios against the plain pass, and the ideal ratio."""
    plain = statistics.median(times["plain"])
    print("ViT-L/14-336 random weights, 5 partitions (672x672), fp32, CPU")
    print(f"{'mode':<12}{'median s':>10}{'time/plain':>12}{'peak RSS MiB':>14}{'above loaded':>14}")
    for mode in MODES:
        median = statistics.median(times[mode])
        above = memory[mode]["peak_mib"] - memory[mode]["loaded_mib"]
        print(
            f"{mode:<12}{median:>10.2f}{median / plain:>12.2f}{memory[mode]['peak_mib']:>14.0f}"
            f"{above:>14.0f}"
        )
    print("ideal time/plain for cls-rows: 23 of 24 layers run = 0.96 (plus two O(N) CLS rows)")
    print(f"runs (s): { {m: [round(t, 2) for t in ts] for m, ts in times.items()} }")
    print(f"cpu pressure (some avg10) at the end: {cpu_pressure()}")


if __name__ == "__main__":
    main()
