"""The `edge-hired` command: argument parsing only, each verb calls one library function.

User errors (`EdgeHiredError`) print one line and exit with code 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from edge_hired import __version__
from edge_hired.cli.args import ratio_arg
from edge_hired.cli.bench_command import add_bench_parser
from edge_hired.cli.eval_command import add_eval_parser
from edge_hired.cli.export_command import add_export_parser
from edge_hired.cli.flags import (
    add_generation_args,
    add_selection_args,
    add_source_args,
    add_telemetry_backend_args,
)
from edge_hired.cli.plan_command import add_plan_parser, add_profile_parser, add_profiles_parser
from edge_hired.cli.serve_command import add_serve_parser
from edge_hired.cli.show_command import add_show_parser
from edge_hired.errors import EdgeHiredError
from edge_hired.signals import EXIT_TERMINATED, Terminated

EXIT_USER_ERROR = 2


def add_run_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired run`."""
    parser = subparsers.add_parser(
        "run",
        help="answer a prompt about an image with HiRED token dropping",
        description="Encode the image, keep the visual tokens HiRED selects under the budget, "
        "and stream the LLM's answer. Without --model or --bundle it runs the embedded "
        "random-weight demo model.",
    )
    add_source_args(
        parser, bundle_help="a bundle written by `edge-hired export` (runs from it alone)"
    )
    parser.add_argument("--prompt", default="Describe the image.", help="the question")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the answer and every figure, no streaming",
    )
    telemetry = parser.add_argument_group("telemetry")
    telemetry.add_argument(
        "--telemetry",
        metavar="FILE.json",
        help="record memory, load and power per phase of the request to FILE",
    )
    add_telemetry_backend_args(telemetry, interval_s=0.1)
    add_selection_args(parser)
    add_generation_args(parser)
    parser.set_defaults(handler=_run_command)


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the embedded random-weight model and sample image",
        description="Builds (once) a tiny random-weight LLaVA-NeXT from configs and runs HiRED at "
        "a 20%% budget on the bundled sample image. The answer is noise; every stage is real.",
    )
    parser.add_argument("--budget", type=ratio_arg, default=0.2, metavar="RATIO")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_demo_command)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line interface."""
    parser = OneLineParser(
        prog="edge-hired",
        description="HiRED visual-token dropping for LLaVA-NeXT, LLaVA-1.5 and LLaVA-OneVision "
        "(CLIP or SigLIP towers) on Jetson and small GPUs.",
    )
    parser.add_argument("--version", action="version", version=f"edge-hired {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    for add in (
        add_run_parser,
        add_demo_parser,
        add_export_parser,
        add_plan_parser,
        add_profiles_parser,
        add_profile_parser,
        add_eval_parser,
        add_bench_parser,
        add_show_parser,
        add_serve_parser,
    ):
        add(subparsers)
    return parser


def _run_command(args: argparse.Namespace) -> int:
    from edge_hired.cli.run_command import run_from_args

    return run_from_args(args)


def _demo_command(args: argparse.Namespace) -> int:
    from edge_hired.cli.run_command import demo_from_args

    return demo_from_args(args)


def _quiet_third_party() -> None:
    """Silence known-harmless import chatter (bitsandbytes' CPU kernel probe, hub notices)."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", message=".*gemm_4bit_forward.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        _quiet_third_party()
        return handler(args)
    except EdgeHiredError as error:
        print(f"edge-hired: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("edge-hired: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("edge-hired: terminated", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
