"""`edge-hired show`: draw which visual tokens a strategy keeps, as a PNG.

Argument parsing only; the work is one call to `edge_hired.visualize.show`. The selection flags
are `run`'s own, so `show` and `run` with the same flags draw and use the same tokens. Parsing
stays light (no torch import); the handler imports the pipeline.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from edge_hired.cli.flags import add_selection_args, add_source_args
from edge_hired.errors import InvalidArgumentError, expected

__all__ = ["add_show_parser", "show_from_args"]

#: The request a memory plan of `show` is made for: `run`'s default prompt and length.
RUN_PROMPT, RUN_NEW_TOKENS = "Describe the image.", 64


def add_show_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired show --out FILE.png [--model DIR | --bundle DIR] [--image PATH] ...`."""
    parser = subparsers.add_parser(
        "show",
        help="draw the tokens HiRED keeps and drops on the image, as a PNG",
        description="Encode the image and select its visual tokens exactly as `run` does, then "
        "draw every partition's 24x24 token grid on the pixels the encoder saw: kept tokens "
        "outlined in magenta, dropped tokens greyed, tokens removed by unpadding hatched; the "
        "layer-0 attention heat map of the full image with the sub-image regions its content "
        "scores were counted in; each partition's budget. No text is generated.",
    )
    add_source_args(parser, bundle_help="a bundle written by `edge-hired export`")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE.png",
        help="the PNG to write (written to a temporary file, then renamed)",
    )
    parser.add_argument(
        "--cell-px",
        type=cell_px_arg,
        default=16,
        metavar="PX",
        help="pixels per token cell in the picture, 6..64 (default 16)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: the PNG's path, kept tokens per partition, budgets",
    )
    add_selection_args(parser)
    parser.set_defaults(handler=show_from_args)


def cell_px_arg(text: str) -> int:
    """argparse type: pixels per token cell, 6..64."""
    from edge_hired.visualize import MAX_CELL_PX, MIN_CELL_PX

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not MIN_CELL_PX <= value <= MAX_CELL_PX:
        raise argparse.ArgumentTypeError(
            f"expected an integer in {MIN_CELL_PX}..{MAX_CELL_PX}, got {text!r}"
        )
    return value


def check_out_path(out: Path) -> Path:
    """A .png file in an existing directory, else a one-line InvalidArgumentError."""
    out = out.expanduser()
    if out.suffix.lower() != ".png":
        raise InvalidArgumentError(expected("--out", "a file name ending in .png", str(out)))
    if out.is_dir():
        raise InvalidArgumentError(expected("--out", "a file, not a directory", str(out)))
    if not out.parent.is_dir():
        raise InvalidArgumentError(
            expected("--out directory", "an existing directory", str(out.parent))
        )
    return out


def show_from_args(args: argparse.Namespace) -> int:
    """Load the model, select, draw, say what was written."""
    from edge_hired.cli.run_command import load_pipeline, selection_from_args
    from edge_hired.cli.run_planning import planned_cap
    from edge_hired.cli.runtime_flags import source_from_args, target_from_args
    from edge_hired.runtime.images import load_image
    from edge_hired.runtime.sources import default_image
    from edge_hired.visualize_native import show_any as show

    out = check_out_path(args.out)  # fail fast, before a long model load
    target = target_from_args(args, source_from_args(args), quiet=args.json)
    image = load_image(args.image or default_image())
    selection = selection_from_args(args)
    hw = (image.height, image.width)  # planned as `run` plans its default request
    plan = planned_cap(target, hw, RUN_PROMPT, selection, RUN_NEW_TOKENS, quiet=args.json)
    selection = replace(selection, cap=plan.budget_tokens if plan else None)
    pipeline = load_pipeline(args, target)
    report = show(pipeline, image, out, selection, cell_px=args.cell_px)
    if args.json:
        print(report.to_json())
        return 0
    per_part = ", ".join(str(len(cells)) for cells in report.highlighted)
    print(
        f"wrote {report.path} ({report.size[0]}x{report.size[1]} px): {report.num_highlighted} "
        f"tokens kept ({per_part} per partition), budgets {list(report.partition_budgets)}",
        file=sys.stderr,
    )
    return 0
