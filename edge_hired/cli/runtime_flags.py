"""The runtime flags every command that loads or plans a model takes, and the target they make.

`add_runtime_args` adds the one set (`--device --dtype --kv-dtype --quant --providers --no-verify
--compile --profile --memory-cap --ttft-target --headless`) to `run`, `serve`, `bench`, `eval`,
`plan` and `show`; `target_from_args` turns them into the one `Target`
(`edge_hired.runtime.target.resolve_target`), with the same precedence everywhere: flag >
the profile's `[runtime]` section > the device's default; `--memory-cap` overrides the
profile's memory. Parsing only: the decisions are the target builder's.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from edge_hired.cli.args import gib_arg, seconds_arg
from edge_hired.units import DTYPE_ALIASES, DTYPE_BYTES, QUANTIZATIONS

if TYPE_CHECKING:
    from edge_hired.runtime.model_source import ModelSource
    from edge_hired.runtime.target import Target

#: Short (fp16) and full (float16) names; the target builder reads both.
DTYPE_CHOICES = (*DTYPE_ALIASES, *DTYPE_BYTES)


def add_runtime_args(parser: argparse.ArgumentParser, profile_required: bool = False) -> None:
    """The device, dtype, quantization, providers, profile and plan-limit flags."""
    group = parser.add_argument_group("device and runtime (flag > profile [runtime] > default)")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    group.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        help="compute dtype (default: the profile's; else bf16 for a bf16 checkpoint on a GPU "
        "that does bf16, fp16 on CUDA, fp32 on a CPU; a bundle's exported dtype)",
    )
    group.add_argument(
        "--kv-dtype",
        choices=DTYPE_CHOICES,
        help="KV-cache dtype (the cache is held in the compute dtype: it must equal it)",
    )
    group.add_argument(
        "--quant",
        "--quantization",
        dest="quant",
        choices=QUANTIZATIONS,
        help="with --model: quantize the LLM with bitsandbytes as it loads (default: the "
        "profile's, else none); a bundle's is fixed at export",
    )
    group.add_argument(
        "--providers",
        metavar="LIST",
        help="ONNX Runtime providers in order, e.g. cuda,cpu (default: the profile's, else "
        "TensorRT > CUDA > CPU)",
    )
    group.add_argument(
        "--no-verify", action="store_true", help="skip the sha256 check of a bundle's files"
    )
    group.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="decode on a static KV cache with a torch.compile'd step (CUDA graphs on CUDA); "
        "the first request compiles (announced, reported as compile_s). auto: on for CUDA, off "
        "on a CPU",
    )
    add_plan_args(parser, profile_required)


def add_plan_args(parser: argparse.ArgumentParser, profile_required: bool = False) -> None:
    """`--profile`, `--memory-cap`, `--ttft-target`, `--headless`."""
    group = parser.add_argument_group("memory plan")
    group.add_argument(
        "--profile",
        required=profile_required,
        metavar="NAME|FILE.toml",
        help="device profile (see `edge-hired profiles`, or a file from `profile calibrate`): "
        "its [runtime] section fills unset flags; keep at most the visual tokens that fit",
    )
    group.add_argument(
        "--memory-cap",
        type=gib_arg,
        metavar="GIB",
        help="memory a request may use, in GiB (2^30 bytes); overrides the profile's figure "
        "(no --profile: the detected Jetson, else cpu)",
    )
    group.add_argument(
        "--ttft-target",
        type=seconds_arg,
        metavar="SECONDS",
        help="keep at most the visual tokens whose predicted TTFT (preprocess + encoder + "
        "prefill: the profile's calibrated fits, else a roofline estimate) fits SECONDS",
    )
    group.add_argument(
        "--headless",
        action="store_true",
        help="plan as if the desktop were off (a Jetson profile's headless cap)",
    )


def target_from_args(
    args: argparse.Namespace, source: ModelSource, quiet: bool = False, planned: bool = False
) -> Target:
    """The command's one `Target`; prints how the profile applied and any warning.

    `planned`: for `plan`, whose device is the profile's, not this machine's.
    """
    from edge_hired.runtime.sources import providers_arg
    from edge_hired.runtime.target import ProfileProbe, TargetFlags, resolve_target

    flags = TargetFlags(
        device=args.device,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        quantization=args.quant,
        providers=providers_arg(args.providers),
        verify=not args.no_verify,
        profile=args.profile,
        memory_cap_gib=args.memory_cap,
        ttft_target_s=args.ttft_target,
        headless=args.headless,
        compile=getattr(args, "compile", "auto"),
    )
    probe = None
    if planned:
        from edge_hired.profiles import load_profile

        flags = replace(flags, profile=load_profile(args.profile))
        probe = ProfileProbe(flags.profile)
    target = resolve_target(flags, source, probe)
    for line in () if quiet else (*target.notes, *target.warnings):
        print(f"[edge-hired] {line}", file=sys.stderr)
    return target


def source_from_args(args: argparse.Namespace) -> ModelSource:
    """--bundle, --model, or the demo model."""
    from edge_hired.runtime.sources import model_source

    return model_source(args.model, args.bundle)
