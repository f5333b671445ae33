"""`edge-hired profile calibrate`: parse, then one `facts.calibrate.calibrate` call with a bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_hired.cli.args import positive_int
from edge_hired.units import DTYPE_ALIASES, QUANTIZATIONS

STEPS = 9  # device memory, six probes, peak checks, write


def add_calibrate_parser(actions: argparse._SubParsersAction) -> None:
    """`profile calibrate (--model DIR | --bundle DIR) --out FILE.toml [--name NAME]`."""
    parser = actions.add_parser(
        "calibrate",
        help="measure this device with a model and write a profile from the measurements",
        description="Measure memory (each figure in a fresh process), the runtime's and CUDA's "
        "fixed costs, the encoder's and prefill's activation peaks and the timings of "
        "preprocess, encoder, prefill (fit a + b*n + c*n^2) and decode, check the planner's "
        "prediction against whole requests at two budgets, and write FILE.toml: a profile "
        "that --profile FILE.toml accepts. Takes minutes.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", metavar="DIR_OR_HUB_ID", help="a checkpoint of a supported family"
    )
    source.add_argument("--bundle", metavar="DIR", help="a bundle written by `edge-hired export`")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.toml")
    parser.add_argument("--name", help="profile name (default and required: the file's name)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=tuple(DTYPE_ALIASES), help="compute dtype")
    parser.add_argument("--quant", choices=QUANTIZATIONS, default="none", help="with --model")
    parser.add_argument("--rounds", type=positive_int, default=2, help="timing rounds (2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=calibrate_from_args)


def calibrate_from_args(args: argparse.Namespace) -> int:
    """Calibrate with a tqdm bar over the steps; print where the profile went."""
    from tqdm import tqdm

    from edge_hired.facts.calibrate import CalibrateOptions, calibrate

    options = CalibrateOptions(
        out=args.out,
        model=args.model,
        bundle=args.bundle,
        name=args.name,
        device=args.device,
        dtype=args.dtype,
        quant=args.quant,
        rounds=args.rounds,
    )
    with tqdm(total=STEPS, desc="calibrate", file=sys.stderr, disable=args.no_progress) as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        profile = calibrate(options, step)
    print(f"wrote {args.out} (profile {profile.name}); use it with --profile {args.out}")
    return 0
