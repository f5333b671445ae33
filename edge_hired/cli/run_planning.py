"""`--profile` / `--memory-cap` of `run`, `bench` and `show`: the memory plan's token cap.

Parsing and printing only: a request's facts and plan are `edge_hired.facts.run_facts`.
"""

from __future__ import annotations

import argparse
import sys

from edge_hired.cli.args import gib_arg
from edge_hired.errors import BudgetError
from edge_hired.facts.run_facts import RunFacts, bundle_run_facts, plan_for_run, run_facts
from edge_hired.planner.arithmetic import Plan
from edge_hired.runtime.sources import default_model
from edge_hired.units import gib


def add_profile_args(parser: argparse.ArgumentParser) -> None:
    """`--profile NAME` and `--memory-cap GIB` for `run`."""
    group = parser.add_argument_group("memory plan")
    group.add_argument(
        "--profile",
        metavar="NAME",
        help="device profile (see `edge-hired profiles`): keep at most the visual "
        "tokens that fit in its memory",
    )
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


def wants_plan(args: argparse.Namespace) -> bool:
    """Whether `run` was given --profile or --memory-cap."""
    return any(getattr(args, name, None) is not None for name in ("profile", "memory_cap"))


def planned_token_cap(args: argparse.Namespace, facts: RunFacts) -> int | None:
    """The visual-token cap `run` applies: None without --profile / --memory-cap.

    Raises PlanError (exit 2) when not even one visual token fits; prints the plan's summary to
    stderr unless --json.
    """
    if not wants_plan(args):
        return None
    plan = plan_for_run(
        facts,
        args.profile,
        args.memory_cap,
        args.max_new_tokens,
        newline=getattr(args, "newline", "none"),
    )
    if not getattr(args, "json", False):
        print(run_summary(plan), file=sys.stderr)
    return plan.budget_tokens


def run_summary(plan: Plan) -> str:
    """Two lines for `run`'s stderr."""
    return (
        f"[edge-hired] plan ({plan.profile}): cap {gib(plan.cap.bytes)} GiB ({plan.cap.reason});"
        f" keeping at most {plan.budget_tokens} of {plan.visual_tokens_available} visual tokens\n"
        f"[edge-hired] predicted peak {gib(plan.peak_bytes)} GiB + margin "
        f"{gib(plan.required_bytes - plan.peak_bytes)} GiB"
    )


def planned_cap(args: argparse.Namespace, image_hw: tuple[int, int]) -> int | None:
    """The memory planner's token cap for --profile / --memory-cap (None without them)."""
    if not wants_plan(args):
        return None
    facts = run_facts_from_args(args, image_hw)
    cap = planned_token_cap(args, facts)
    if args.strategy == "full" and cap is not None and cap < facts.visual_tokens:
        raise BudgetError(
            f"--strategy full keeps all {facts.visual_tokens} visual tokens, but the memory plan "
            f"fits {cap}: choose a dropping strategy (e.g. hired) or drop --profile/--memory-cap"
        )
    return cap
