"""Flag groups shared by several commands, so `run`, `show` and `serve` read the same options."""

from __future__ import annotations

import argparse
from typing import Any

from edge_hired.cli.args import positive_int, ratio_arg, unit_interval
from edge_hired.cli.runtime_flags import add_runtime_args
from edge_hired.device.telemetry.choose import CHOICES
from edge_hired.hired import STRATEGIES

STRATEGY_HELP = (
    "hired (default), full (no dropping), hired-ref (the paper's published arithmetic), "
    "spatial, random, prumerge, prumerge+ (adaptive count), dart (duplication-aware), "
    "resize (Qwen: the image shrunk to the budget)"
)


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """Budget and strategy flags shared by run-like commands."""
    group = parser.add_argument_group("token selection")
    budget = group.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget",
        type=ratio_arg,
        metavar="RATIO",
        help="keep this share of the image's (1 + sub-images) x N tokens, e.g. 0.2",
    )
    budget.add_argument(
        "--tokens", type=positive_int, metavar="N", help="keep at most N visual tokens"
    )
    group.add_argument(
        "--strategy", default="hired", choices=STRATEGIES, metavar="NAME", help=STRATEGY_HELP
    )
    group.add_argument(
        "--alpha",
        type=unit_interval,
        default=0.5,
        help="share of the budget given to the full image (default 0.5)",
    )
    group.add_argument(
        "--newline",
        choices=("none", "rows"),
        default="none",
        help="image_newline tokens after kept stitched rows (default none, as the paper)",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the random strategy and sampling"
    )


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """Sampling flags, named as transformers names them."""
    group = parser.add_argument_group("generation (greedy unless --do-sample)")
    group.add_argument("--max-new-tokens", type=positive_int, default=64)
    group.add_argument("--do-sample", action="store_true")
    group.add_argument("--temperature", type=float)
    group.add_argument("--top-p", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--repetition-penalty", type=float)


def add_source_args(parser: argparse.ArgumentParser, bundle_help: str) -> None:
    """Where the model comes from (checkpoint or bundle) and the image; then the runtime flags."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        metavar="DIR_OR_HUB_ID",
        help="LLaVA or Qwen-VL checkpoint (default: the embedded tiny demo model)",
    )
    source.add_argument("--bundle", metavar="DIR", help=bundle_help)
    parser.add_argument("--image", metavar="PATH", help="image file (default: the bundled sample)")
    add_runtime_args(parser)


def add_telemetry_backend_args(group: Any, interval_s: float) -> None:
    """`--telemetry-backend` (the sampler backends, by their own names) and its interval."""
    group.add_argument(
        "--telemetry-backend",
        choices=CHOICES,
        default="auto",
        help="auto: jtop on a Jetson, else NVML, else psutil",
    )
    group.add_argument("--telemetry-interval", type=float, default=interval_s, metavar="SECONDS")
