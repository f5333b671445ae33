"""Runtime flags shared by `run`, `bench` and `eval`, and the profile defaults behind them.

Parsing only: `resolved_args` turns the flags and `--profile` into `RuntimeSettings`
(`edge_hired.runtime.settings.apply_profile`) and writes them back, so the rest of each command
reads `args.providers`, `args.dtype`, `args.kv_dtype` and `args.quant` as if typed.
"""

from __future__ import annotations

import argparse
import sys

from edge_hired.units import DTYPE_ALIASES, QUANTIZATIONS


def add_runtime_flags(parser: argparse.ArgumentParser, quant: bool = True) -> None:
    """--kv-dtype (and --quant): the flags that override a profile's runtime section."""
    parser.add_argument(
        "--kv-dtype",
        choices=tuple(DTYPE_ALIASES),
        help="KV-cache dtype (default: the profile's, else the compute dtype; must equal it)",
    )
    if quant:
        parser.add_argument(
            "--quant",
            choices=QUANTIZATIONS,
            help="with --model: quantize the LLM with bitsandbytes as it loads (default: the "
            "profile's with --profile, else none); a bundle's is fixed at export",
        )


def resolved_args(args: argparse.Namespace, quiet: bool = False) -> argparse.Namespace:
    """`args` with unset runtime flags filled from `--profile`'s [runtime] section."""
    from edge_hired.device.torch_device import choose_torch_device
    from edge_hired.profiles import load_profile
    from edge_hired.runtime.settings import RuntimeSettings, apply_profile
    from edge_hired.runtime.sources import providers_arg

    given = RuntimeSettings(
        providers=providers_arg(getattr(args, "providers", None)),
        dtype=getattr(args, "dtype", None),
        kv_dtype=getattr(args, "kv_dtype", None),
        quantization=getattr(args, "quant", None),
    )
    name = getattr(args, "profile", None)
    runtime = load_profile(name).runtime if name else None
    device = choose_torch_device(getattr(args, "device", "auto")).device.type
    settings = apply_profile(
        given, runtime, name or "", device, bool(getattr(args, "bundle", None))
    )
    for note in settings.notes if not quiet else ():
        print(f"[edge-hired] {note}", file=sys.stderr)
    return argparse.Namespace(
        **{
            **vars(args),
            "providers": ",".join(settings.providers) if settings.providers else None,
            "dtype": settings.dtype,
            "kv_dtype": settings.kv_dtype,
            "quant": settings.quantization,
        }
    )
