"""`run --ttft-target T` against the measured TTFT, for T = shares of the full-budget TTFT.

    .venv/bin/python scripts/bench_ttft_target.py --model DIR --profile FILE.toml \
        [--shares 0.75,0.5,0.35] [--repeats 1]

Every request is a fresh `edge-hired run --json` process (as a user runs it). The full-budget
TTFT is measured first (median of --repeats); then each target runs, rounds interleaved, and the
table shows the tokens the plan kept, the predicted and the measured TTFT side by side, with the
CPU pressure (/proc/pressure/cpu avg10) read after each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from edge_hired.device.contention import read_cpu_pressure

ROOT = Path(__file__).resolve().parent.parent


def run_once(model: str, profile: str, extra: list[str]) -> dict:
    """One `edge-hired run --json` in a fresh process; its JSON and the CPU pressure after."""
    argv = [sys.executable, "-m", "edge_hired.cli.main", "run", "--model", model, "--profile",
            profile, "--device", "cpu", "--max-new-tokens", "2", "--json", *extra]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:  # e.g. a target below the fixed cost: a refusal is a result too
        return {"refused": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    pressure = read_cpu_pressure()
    result["pressure"] = None if pressure is None else pressure.avg10
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--shares", default="0.75,0.5,0.35")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    full = [run_once(args.model, args.profile, []) for _ in range(args.repeats)]
    ttft_full = statistics.median(r["ttft_s"] for r in full)
    print(f"full budget: {full[0]['visual_tokens_kept']} tokens, TTFT {ttft_full:.2f} s "
          f"(predicted {full[0]['predicted_ttft_s']:.2f} s)")  # fmt: skip
    rows: dict[float, list[dict]] = {share: [] for share in shares}
    for _ in range(args.repeats):
        for share in shares:
            target = share * ttft_full
            rows[share].append(run_once(args.model, args.profile, ["--ttft-target", f"{target}"]))
    print("| share | target s | kept tokens | predicted s | measured s | measured / target "
          "| CPU pressure % |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for share, results in rows.items():
        target = share * ttft_full
        if "refused" in results[0]:
            print(f"| {share:g} | {target:.2f} | refused: {results[0]['refused']} | | | | |")
            continue
        measured = statistics.median(r["ttft_s"] for r in results)
        r = results[0]
        print(f"| {share:g} | {target:.2f} | {r['visual_tokens_kept']} | "
              f"{r['predicted_ttft_s']:.2f} | {measured:.2f} | {measured / target:.2f} | "
              f"{r['pressure']} |")  # fmt: skip


if __name__ == "__main__":
    main()
