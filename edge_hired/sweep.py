"""Budget x strategy sweeps as `bench`, `eval` and the lmms-eval adapter take them.

One parser for each list, one message for each mistake: a budget is 'full' (the unpruned
baseline, which runs once) or a ratio in (0, 1]; a sweep's strategies are the token-dropping
ones (`full` belongs among the budgets), listed once each in the order given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from edge_hired.errors import BudgetError, UnknownStrategyError, expected
from edge_hired.hired import STRATEGIES

FULL = "full"
#: Strategies that choose their own token count (PruMerge's outliers): they ignore the budget.
ADAPTIVE_STRATEGIES = ("prumerge", "prumerge+")
#: What a sweep may list as strategies.
SWEEP_STRATEGIES = tuple(s for s in STRATEGIES if s != FULL)


def parse_ratio(value: object) -> float:
    """A budget ratio in (0, 1], from a number or its text; BudgetError otherwise."""
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BudgetError(expected("budget", "'full' or a ratio in (0, 1]", value)) from None
    if not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise BudgetError(expected("budget", "'full' or a ratio in (0, 1]", value))
    return ratio


def parse_budget(item: object) -> str | float:
    """'full' (any case, spaces ignored) or a ratio in (0, 1]."""
    if isinstance(item, str) and item.strip().lower() == FULL:
        return FULL
    return parse_ratio(item.strip() if isinstance(item, str) else item)


def parse_budgets(items: str | Iterable[object]) -> tuple[str | float, ...]:
    """'full,0.4,0.2' (or the items) -> ('full', 0.4, 0.2): checked, each once, in order."""
    listed = _items(items)
    if not listed:
        raise BudgetError(expected("budgets", "a list like full,0.4,0.2", items))
    return tuple(dict.fromkeys(parse_budget(item) for item in listed))


def parse_strategies(items: str | Iterable[str]) -> tuple[str, ...]:
    """'hired,spatial' (or the items) -> ('hired', 'spatial'): known, not full, each once."""
    listed = _items(items)
    if not listed:
        raise UnknownStrategyError(
            expected("strategies", "one or more of " + ", ".join(SWEEP_STRATEGIES), items)
        )
    for name in listed:
        if name == FULL:
            wanted = "a token-dropping strategy (the budget 'full' runs the baseline)"
            raise UnknownStrategyError(expected("strategy", wanted, FULL))
        if name not in SWEEP_STRATEGIES:
            wanted = "one of " + ", ".join(SWEEP_STRATEGIES)
            raise UnknownStrategyError(expected("strategy", wanted, name))
    return tuple(dict.fromkeys(listed))


def _items(items: str | Iterable[object]) -> list:
    """Comma-separated text split and stripped; other iterables as they are."""
    if isinstance(items, str):
        return [item.strip() for item in items.split(",") if item.strip()]
    return list(items)
