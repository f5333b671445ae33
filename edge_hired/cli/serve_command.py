"""`edge-hired serve`: parse the flags into a `ServeConfig` and call `serve`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_hired.cli.args import positive_int, ratio_arg, unit_interval
from edge_hired.cli.flags import STRATEGY_HELP
from edge_hired.cli.run_command import selection_from_args
from edge_hired.cli.runtime_flags import add_runtime_args, source_from_args, target_from_args
from edge_hired.hired import STRATEGIES


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired serve`."""
    parser = subparsers.add_parser(
        "serve",
        help="an OpenAI-compatible chat-completions server (loopback by default)",
        description="Serve /v1/chat/completions, /v1/models, /health and /metrics with HiRED "
        "token dropping, an image cache, batching and memory admission.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="DIR_OR_HUB_ID", help="checkpoint (default: demo)")
    source.add_argument("--bundle", metavar="DIR", help="a bundle written by `edge-hired export`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", metavar="NAME", help="id in /v1/models (default: source)")
    add_runtime_args(parser)
    _add_limits(parser)
    _add_selection(parser)
    parser.set_defaults(handler=serve_from_args)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("token selection (defaults for every request)")
    budget = group.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=ratio_arg, metavar="RATIO")
    budget.add_argument("--tokens", type=positive_int, metavar="N")
    group.add_argument("--strategy", default="hired", choices=STRATEGIES, help=STRATEGY_HELP)
    group.add_argument("--alpha", type=unit_interval, default=0.5)
    group.add_argument("--newline", choices=("none", "rows"), default="none")
    group.add_argument("--seed", type=int, default=0)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits")
    group.add_argument("--max-batch", type=positive_int, default=4)
    group.add_argument("--max-queue", type=positive_int, default=32)
    group.add_argument("--api-key", metavar="KEY", help="require `Authorization: Bearer KEY`")
    group.add_argument("--max-image-mb", type=float, default=20.0)
    group.add_argument("--allow-image-urls", action="store_true", help="fetch http(s) images")
    group.add_argument("--media-dir", type=Path, metavar="DIR", help="allow file:// under DIR")
    group.add_argument("--cache-mb", type=float, default=256.0, help="image-cache size (MiB)")
    group.add_argument("--max-tokens", type=positive_int, default=64, help="default max_tokens")
    group.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS")


def serve_from_args(args: argparse.Namespace) -> int:
    """Build the config and serve until stopped."""
    from edge_hired.serve.config import ServeConfig
    from edge_hired.serve.server import serve

    target = target_from_args(args, source_from_args(args))
    source = target.source.path
    config = ServeConfig(
        model=source if target.source.kind == "model" else None,
        bundle=source if target.source.kind == "bundle" else None,
        host=args.host,
        port=args.port,
        model_name=args.model_name or Path(source.rstrip("/")).name,
        selection=selection_from_args(args),
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        api_key=args.api_key,
        max_image_mb=args.max_image_mb,
        allow_image_urls=args.allow_image_urls,
        media_dir=args.media_dir,
        cache_mb=args.cache_mb,
        default_max_tokens=args.max_tokens,
        graceful_timeout_s=args.graceful_timeout,
        target=target,
    )
    print(f"[edge-hired] serving {source} on http://{args.host}:{args.port}", file=sys.stderr)
    serve(config)
    return 0
