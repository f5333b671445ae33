"""`edge-hired bench`: parse, load the model or bundle once, call `run_bench`, print the table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge_hired.cli.args import budgets_arg, positive_int, strategies_arg
from edge_hired.cli.flags import add_telemetry_backend_args
from edge_hired.cli.runtime_flags import add_runtime_args, source_from_args, target_from_args
from edge_hired.errors import InvalidArgumentError

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

T = TypeVar("T")

BENCH_DESCRIPTION = (
    "Measure visual tokens, TTFT (request start to first token, preprocessing included), prefill "
    "time, decode tokens/s, end-to-end latency, peak memory and (where power is readable) energy "
    "per request, for every budget x strategy. Settings run round-robin (interleaved) after "
    "warm-up rounds that are not recorded; rows hold medians, and CPU pressure "
    "(/proc/pressure/cpu) is recorded per run so contended runs are visible. Writes "
    "results.csv, results.json (rows and every run), and PNG plots into --out."
)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired bench (--bundle DIR | --model DIR) --budgets ... --out DIR`."""
    parser = subparsers.add_parser(
        "bench",
        help="measure TTFT, decode rate, memory and energy against the token budget",
        description=BENCH_DESCRIPTION,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", metavar="DIR_OR_HUB_ID", help="a checkpoint of a supported family"
    )
    source.add_argument("--bundle", metavar="DIR", help="a bundle written by `edge-hired export`")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="results directory")
    parser.add_argument(
        "--budgets",
        type=budgets_arg,
        default="full,0.4,0.3,0.2,0.1",
        metavar="LIST",
        help="'full' and/or ratios in (0, 1] (default full,0.4,0.3,0.2,0.1)",
    )
    parser.add_argument(
        "--strategies",
        type=strategies_arg,
        default="hired",
        metavar="LIST",
        help="e.g. hired,spatial,prumerge (default hired; prumerge runs once, "
        "its count is adaptive)",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        action="append",
        default=[],
        help="a directory of images (or one image file); repeatable; default: the bundled sample",
    )
    parser.add_argument("--prompt", default="Describe the image.", help="the question asked")
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="measured rounds (default 3)"
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=1,
        help="warm-up rounds, not recorded (default 1)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=16,
        help="tokens generated per request, exactly (default 16)",
    )
    _add_device_args(parser)
    parser.set_defaults(handler=bench_from_args)


def _add_device_args(parser: argparse.ArgumentParser) -> None:
    add_runtime_args(parser)
    group = parser.add_argument_group("telemetry")
    add_telemetry_backend_args(group, interval_s=0.05)
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--no-plots", action="store_true", help="write results only (no matplotlib)")


def options_from_args(args: argparse.Namespace, target: Target | None = None):
    """BenchOptions from the parsed flags (argparse runs `type` on string defaults too).

    With the target, its profile object, memory cap and limits plan every image.
    """
    from edge_hired.bench.options import BenchOptions
    from edge_hired.facts.run_facts import PlanSource

    kind, source = ("bundle", args.bundle) if args.bundle else ("model", args.model)
    profile = target.profile if target is not None else args.profile
    if target is not None and profile is None and args.memory_cap is not None:
        from edge_hired.facts.run_facts import plan_profile

        profile = plan_profile(None, target.device.type)  # the cap applies on the default one
    return BenchOptions(
        budgets=args.budgets,
        strategies=args.strategies,
        images=tuple(args.images),
        prompt=args.prompt,
        repeats=args.repeats,
        warmup=args.warmup,
        max_new_tokens=args.max_new_tokens,
        profile=profile,
        ttft_target_s=args.ttft_target,
        headless=args.headless,
        memory_cap_gib=args.memory_cap,
        source=PlanSource(kind, source),
        telemetry_backend=args.telemetry_backend,
        telemetry_interval_s=args.telemetry_interval,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )


def bench_from_args(args: argparse.Namespace) -> int:
    """Validate the options, resolve the target, load, measure, print the table and the files."""
    from edge_hired.bench.options import check_options, image_paths, settings_for
    from edge_hired.bench.runner import run_bench
    from edge_hired.runtime.sources import load_target

    check_options(options_from_args(args))  # fail fast, before anything is loaded
    if args.ttft_target is not None and args.profile is None:
        raise InvalidArgumentError("--ttft-target: expected --profile too (it predicts the TTFT)")
    target = target_from_args(args, source_from_args(args))
    options = options_from_args(args, target)
    settings_for(options)
    image_paths(options.images)
    _note(f"loading {target.source.path}")
    pipeline = load_target(target)
    _note(f"running on {pipeline.device_reason}")
    report = run_bench(pipeline, options, args.out)
    _note(f"telemetry: {report.environment['telemetry']}")
    _note(f"peak memory: {report.environment['memory_reason']}")
    print(report.table())
    for name, path in report.files.items():
        print(f"{name:<14}{path}")
    return 0


def _note(text: str) -> None:
    print(f"[edge-hired] {text}", file=sys.stderr)
