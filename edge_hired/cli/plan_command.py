"""`edge-hired plan`, `profiles`, `profile detect`, and the `--profile` / `--memory-cap` of `run`.

Argument parsing and printing only: the arithmetic is `edge_hired.planner.plan_budget`, a `run`
request's facts and plan are `edge_hired.facts.run_facts` (`run_facts`, `bundle_run_facts`,
`plan_for_run`, re-exported here), the profiles come from `edge_hired.profiles`, the memory
figures from `edge_hired.device`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_hired.cli.args import count_arg, positive_int
from edge_hired.cli.runtime_flags import add_runtime_args, target_from_args
from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.planner.arithmetic import MemoryCap, Plan, PlanError, plan_budget
from edge_hired.planner.fit_options import FitOption, fit_options, format_options
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.profiles import DeviceProfile, ProfileError, load_all
from edge_hired.units import MIB, gib

# --- parsers ----------------------------------------------------------------------------------


def add_plan_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired plan`."""
    parser = subparsers.add_parser(
        "plan",
        help="the largest visual-token budget that fits a device, and why",
        description="Predict the peak memory of one request on a device profile and print the "
        "breakdown, the largest visual-token budget under the cap, and roofline estimates of "
        "TTFT and decode speed (estimates, not measurements).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", metavar="DIR", help="an exported bundle (its manifest)")
    source.add_argument(
        "--model", metavar="DIR_OR_HUB_ID", help="a checkpoint's config alone (no weights are read)"
    )
    add_runtime_args(parser, profile_required=True)
    parser.add_argument("--prompt-tokens", type=count_arg, default=64, metavar="N")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, metavar="N")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.set_defaults(handler=plan_from_args)


def add_profiles_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired profiles`."""
    parser = subparsers.add_parser(
        "profiles",
        help="list the device profiles",
        description="List every device profile with its usable memory and peak figures.",
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=profiles_from_args)


def add_profile_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired profile detect`."""
    parser = subparsers.add_parser("profile", help="device profile tools (detect, calibrate)")
    actions = parser.add_subparsers(
        dest="profile_command", required=True, metavar="ACTION", parser_class=type(parser)
    )
    detect = actions.add_parser(
        "detect",
        help="name the profile of this Jetson",
        description="Read /proc/device-tree/model, /proc/device-tree/compatible and "
        "/etc/nv_tegra_release and print the matching profile name.",
    )
    detect.set_defaults(handler=detect_from_args)
    from edge_hired.cli.calibrate_command import add_calibrate_parser

    add_calibrate_parser(actions)


# --- plan -------------------------------------------------------------------------------------


def plan_from_args(args: argparse.Namespace) -> int:
    """Plan for a bundle or a config on a profile (its device, not this machine's) and print it."""
    from edge_hired.facts.memory_cap import memory_cap
    from edge_hired.facts.run_facts import target_inputs
    from edge_hired.runtime.model_source import ModelSource

    source = ModelSource("bundle", args.bundle) if args.bundle else ModelSource("model", args.model)
    target = target_from_args(args, source, quiet=args.json, planned=True)
    profile, inputs = target.profile, target_inputs(target)
    request = PlanRequest(
        prompt_tokens=args.prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        static_kv_cache=target.compile_decode,
    )
    cap = memory_cap(profile, target.memory_cap_gib, headless=target.headless)
    try:
        plan = plan_budget(inputs, profile, request, cap, target.ttft_target_s)
    except PlanError:
        options = fit_options_for(args, profile, inputs, request, cap)
        print(format_options(options, inputs.max_geometry()[1]))
        raise
    print(json.dumps(plan_json(plan)) if args.json else format_plan(plan))
    return 0


def fit_options_for(
    args: argparse.Namespace,
    profile: DeviceProfile,
    inputs: PlanInputs,
    request: PlanRequest,
    cap: MemoryCap,
) -> list[FitOption]:
    """What would fit instead: the planner's options, with 4-bit weights counted from --model."""
    four_bit = None
    if args.model and inputs.quantization == "8bit":
        from edge_hired.runtime.loading import read_config

        config = read_config(args.model)
        four_bit = inputs_from_config(config, "4bit", inputs.compute_dtype, inputs.kv_dtype)
    return fit_options(inputs, profile, request, cap, four_bit)


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data, with the budget's share of the available tokens."""
    data = plan.to_dict()
    data["budget_share"] = plan.budget_tokens / max(plan.visual_tokens_available, 1)
    return data


def format_plan(plan: Plan) -> str:
    """The breakdown as a table, the budget, the reasons and the labelled estimates."""
    share = 100 * plan.budget_tokens / max(plan.visual_tokens_available, 1)
    rows = [f"  {line.name:<20} {gib(line.bytes):>7}  {line.note}" for line in plan.lines]
    estimates = plan.estimates
    return "\n".join(
        [
            f"plan: {plan.source} on {plan.profile}",
            f"memory cap           {gib(plan.cap.bytes):>7} GiB  {plan.cap.reason}",
            "",
            f"  {'component':<20} {'GiB':>7}  note",
            *rows,
            f"  {'total':<20} {gib(plan.required_bytes):>7}  "
            f"predicted peak {gib(plan.peak_bytes)} + margin",
            "",
            f"visual-token budget  {plan.budget_tokens} of {plan.visual_tokens_available} "
            f"({share:.0f}%), {plan.bytes_per_visual_token / MIB:.2f} MiB per visual token",
            f"predicted TTFT       {plan.predicted_ttft_s:.2f} s ({plan.ttft_note})",
            f"estimated decode     {estimates.decode_tokens_per_s:.1f} tokens/s",
            f"                     ({estimates.note})",
            "why:",
            *(f"  - {reason}" for reason in plan.reasons),
        ]
    )


# --- profiles and detection -------------------------------------------------------------------


def profiles_from_args(args: argparse.Namespace) -> int:
    """List the profiles."""
    profiles = load_all()
    if args.json:
        print(json.dumps([_profile_row(p) for p in profiles]))
        return 0
    print(
        f"{'name':<20} {'usable GiB':>10} {'unified':>7} {'GB/s':>6} {'TFLOPS':>7}  "
        f"{'quant':<5}  description"
    )
    for p in profiles:
        usable = p.memory.usable_gib()
        memory = "live" if usable is None else f"{usable:.2f}"
        print(
            f"{p.name:<20} {memory:>10} {'yes' if p.memory.unified else 'no':>7} "
            f"{p.performance.bandwidth_gb_s:>6g} {p.performance.fp16_tflops:>7g}  "
            f"{p.runtime.quantization:<5}  {p.description}"
        )
    return 0


def _profile_row(profile: DeviceProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "description": profile.description,
        "usable_gib": profile.memory.usable_gib(),
        "unified": profile.memory.unified,
        "bandwidth_gb_s": profile.performance.bandwidth_gb_s,
        "fp16_tflops": profile.performance.fp16_tflops,
        "quantization": profile.runtime.quantization,
        "path": str(profile.path),
    }


def detect_from_args(args: argparse.Namespace) -> int:
    """Print the detected Jetson's profile name; exit 1 when this is not a Jetson."""
    from edge_hired.device.jetson import detect_jetson

    info = detect_jetson()
    if info.profile is not None:
        print(info.profile)
        print(
            f"edge-hired: {info.model or 'Jetson'} (L4T {info.l4t or '?'}): {info.reason}",
            file=sys.stderr,
        )
        return 0
    if info.is_jetson:
        raise ProfileError(
            f"detected {info.model or 'a Jetson'} (L4T {info.l4t or '?'}) but "
            f"{info.reason}; write one in profiles/ or pass --profile"
        )
    print(f"edge-hired: {info.reason}; pick a profile from `edge-hired profiles`", file=sys.stderr)
    return 1
