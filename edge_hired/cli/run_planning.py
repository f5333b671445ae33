"""`--profile` / `--memory-cap` of `run`, `bench` and `show`: the memory plan's token cap.

Parsing and printing only: a request's facts and plan are `edge_hired.facts.run_facts`.
"""

from __future__ import annotations

import argparse
import sys

from edge_hired.cli.args import gib_arg
from edge_hired.errors import BudgetError
from edge_hired.facts.run_facts import (
    PlanLimits,
    RunFacts,
    bundle_run_facts,
    plan_for_run,
    run_facts,
)
from edge_hired.planner.arithmetic import Plan
from edge_hired.runtime.sources import default_model
from edge_hired.units import gib


def add_plan_limit_args(group: argparse._ActionsContainer) -> None:
    """`--ttft-target SECONDS` and `--headless`, for `run`, `plan`, `bench` and `serve`."""
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


def add_profile_args(parser: argparse.ArgumentParser) -> None:
    """`--profile NAME|FILE.toml`, `--memory-cap GIB` and the plan limits for `run`."""
    group = parser.add_argument_group("memory plan")
    group.add_argument(
        "--profile",
        metavar="NAME|FILE.toml",
        help="device profile (see `edge-hired profiles`, or a file from `profile calibrate`): "
        "keep at most the visual tokens that fit in its memory",
    )
    add_plan_limit_args(group)
    group.add_argument(
        "--memory-cap",
        type=gib_arg,
        metavar="GIB",
        help="memory the request may use, in GiB (2^30 bytes); overrides the "
        "profile's figure (no --profile: the detected Jetson, else cpu)",
    )


def run_facts_from_args(args: argparse.Namespace, image_hw: tuple[int, int]) -> RunFacts:
    """RunFacts for `run`'s parsed arguments: --bundle, --model, or the demo model."""
    if getattr(args, "bundle", None):
        return bundle_run_facts(args.bundle, image_hw, args.prompt, args.device)
    model = args.model or default_model()
    quant = getattr(args, "quant", None) or "none"
    return run_facts(model, image_hw, args.prompt, args.device, args.dtype, quantization=quant)


def seconds_arg(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


PLAN_FLAGS = ("profile", "memory_cap", "ttft_target")


def wants_plan(args: argparse.Namespace) -> bool:
    """Whether `run` was given --profile, --memory-cap or --ttft-target."""
    return any(getattr(args, name, None) is not None for name in PLAN_FLAGS)


def limits_from_args(args: argparse.Namespace) -> PlanLimits:
    """The plan limits of the parsed flags."""
    return PlanLimits(
        memory_cap_gib=getattr(args, "memory_cap", None),
        ttft_target_s=getattr(args, "ttft_target", None),
        headless=bool(getattr(args, "headless", False)),
        first_request=True,  # run answers once per process; bench plans through BenchOptions
    )


def run_plan(args: argparse.Namespace, facts: RunFacts) -> Plan | None:
    """The plan `run` applies: None without --profile / --memory-cap / --ttft-target.

    Raises PlanError (exit 2) when not even one visual token fits; prints the plan's summary to
    stderr unless --json.
    """
    if not wants_plan(args):
        return None
    newline = getattr(args, "newline", "none")
    limits = limits_from_args(args)
    plan = plan_for_run(facts, args.profile, None, args.max_new_tokens, newline, limits)
    if not getattr(args, "json", False):
        print(run_summary(plan), file=sys.stderr)
    return plan


def planned_token_cap(args: argparse.Namespace, facts: RunFacts) -> int | None:
    """The visual-token cap `run` applies (None without a plan flag)."""
    plan = run_plan(args, facts)
    return None if plan is None else plan.budget_tokens


def run_summary(plan: Plan) -> str:
    """Two lines for `run`'s stderr."""
    return (
        f"[edge-hired] plan ({plan.profile}): cap {gib(plan.cap.bytes)} GiB ({plan.cap.reason});"
        f" keeping at most {plan.budget_tokens} of {plan.visual_tokens_available} visual tokens\n"
        f"[edge-hired] predicted peak {gib(plan.peak_bytes)} GiB + margin "
        f"{gib(plan.required_bytes - plan.peak_bytes)} GiB; predicted TTFT "
        f"{plan.predicted_ttft_s:.2f} s ({plan.ttft_note})"
    )


def planned_cap(args: argparse.Namespace, image_hw: tuple[int, int]) -> Plan | None:
    """The plan for --profile / --memory-cap / --ttft-target (None without them)."""
    if not wants_plan(args):
        return None
    facts = run_facts_from_args(args, image_hw)
    plan = run_plan(args, facts)
    cap = None if plan is None else plan.budget_tokens
    if args.strategy == "full" and cap is not None and cap < facts.visual_tokens:
        raise BudgetError(
            f"--strategy full keeps all {facts.visual_tokens} visual tokens, but the memory plan "
            f"fits {cap}: choose a dropping strategy (e.g. hired) or drop --profile/--memory-cap"
        )
    return plan


def ttft_comparison(plan: Plan, measured_s: float, kept: int) -> str:
    """One stderr line: the plan's predicted TTFT next to the measured one."""
    ratio = measured_s / plan.predicted_ttft_s if plan.predicted_ttft_s > 0 else float("nan")
    return (
        f"[edge-hired] TTFT measured {measured_s:.2f} s, predicted {plan.predicted_ttft_s:.2f} s "
        f"at {plan.budget_tokens} tokens ({kept} kept; measured/predicted {ratio:.2f}; "
        f"{plan.ttft_note})"
    )
