"""The memory plan of `run` (and `show`): the visual-token cap of the target's profile and limits.

Printing and checking only: a request's facts and plan are `edge_hired.facts.run_facts`
(`target_run_facts`, `plan_for_target`), the flags are `edge_hired.cli.runtime_flags`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from edge_hired.facts.run_facts import (
    RunFacts,
    check_full_fits,
    plan_for_target,
    target_run_facts,
)
from edge_hired.planner.arithmetic import Plan
from edge_hired.units import gib

if TYPE_CHECKING:
    from edge_hired.runtime.pipeline import SelectionOptions
    from edge_hired.runtime.target import Target


def planned_cap(
    target: Target,
    image_hw: tuple[int, int],
    prompt: str,
    selection: SelectionOptions,
    max_new_tokens: int,
    quiet: bool = False,
) -> Plan | None:
    """The plan for --profile / --memory-cap / --ttft-target (None without them)."""
    if not target.wants_plan:
        return None
    facts = target_run_facts(target, image_hw, prompt)
    return plan_request(target, facts, selection, max_new_tokens, quiet)


def plan_request(
    target: Target,
    facts: RunFacts,
    selection: SelectionOptions,
    max_new_tokens: int,
    quiet: bool = False,
) -> Plan:
    """The plan of `facts` on the target; prints its summary to stderr unless `quiet`.

    Raises PlanError (exit 2) when not even one visual token fits, BudgetError when `full` was
    asked and fewer tokens fit.
    """
    plan = plan_for_target(target, facts, max_new_tokens, selection.newline, first_request=True)
    if not quiet:
        print(run_summary(plan), file=sys.stderr)
    check_full_fits(selection.strategy, facts.visual_tokens, plan.budget_tokens, "--strategy")
    return plan


def run_summary(plan: Plan) -> str:
    """Two lines for `run`'s stderr."""
    return (
        f"[edge-hired] plan ({plan.profile}): cap {gib(plan.cap.bytes)} GiB ({plan.cap.reason});"
        f" keeping at most {plan.budget_tokens} of {plan.visual_tokens_available} visual tokens\n"
        f"[edge-hired] predicted peak {gib(plan.peak_bytes)} GiB + margin "
        f"{gib(plan.required_bytes - plan.peak_bytes)} GiB; predicted TTFT "
        f"{plan.predicted_ttft_s:.2f} s ({plan.ttft_note})"
    )


def ttft_comparison(plan: Plan, measured_s: float, kept: int) -> str:
    """One stderr line: the plan's predicted TTFT next to the measured one."""
    ratio = measured_s / plan.predicted_ttft_s if plan.predicted_ttft_s > 0 else float("nan")
    return (
        f"[edge-hired] TTFT measured {measured_s:.2f} s, predicted {plan.predicted_ttft_s:.2f} s "
        f"at {plan.budget_tokens} tokens ({kept} kept; measured/predicted {ratio:.2f}; "
        f"{plan.ttft_note})"
    )
