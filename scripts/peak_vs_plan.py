"""The planner's predicted peak against the measured peak RSS, one fresh process per budget.

    .venv/bin/python scripts/peak_vs_plan.py --model DIR --profile FILE.toml [--budgets 1,0.5,0.2]

Each budget runs `edge-hired run --json --budget B` in its own process (the request's peak RSS,
weights and runtime included); the prediction is `predicted_peak_bytes` for the tokens it kept,
from the same facts `run` plans with.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from edge_hired.facts.run_facts import run_facts, run_request
from edge_hired.planner.arithmetic import predicted_peak_bytes
from edge_hired.profiles import load_profile
from edge_hired.units import MIB, SHORT_DTYPES

ROOT = Path(__file__).resolve().parent.parent
NEW = 2


def measured(model: str, profile: str, budget: float) -> dict:
    argv = [sys.executable, "-m", "edge_hired.cli.main", "run", "--model", model, "--profile",
            profile, "--device", "cpu", "--budget", repr(budget), "--max-new-tokens", str(NEW),
            "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def predicted_mib(model: str, profile_path: str, result: dict, prompt: str) -> float:
    profile = load_profile(profile_path)
    hw = tuple(result["image_size"])  # (height, width)
    facts = run_facts(model, hw, prompt, "cpu", SHORT_DTYPES[result["compute_dtype"]])
    request = run_request(facts, NEW)
    kept = result["visual_tokens_kept"]
    return predicted_peak_bytes(facts.inputs, profile, request, kept) / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--budgets", default="1,0.5,0.2")
    args = parser.parse_args()
    print("| budget | kept tokens | predicted MiB | measured MiB | error |")
    print("|---|---|---|---|---|")
    for budget in (float(x) for x in args.budgets.split(",")):
        result = measured(args.model, args.profile, budget)
        predicted = predicted_mib(args.model, args.profile, result, "Describe the image.")
        error = predicted / result["peak_rss_mib"] - 1
        print(f"| {budget:g} | {result['visual_tokens_kept']} | {predicted:.0f} | "
              f"{result['peak_rss_mib']:.0f} | {error:+.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
