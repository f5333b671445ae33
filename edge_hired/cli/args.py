"""argparse value types shared by the commands: each refuses bad input with one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, TypeVar

from edge_hired.errors import InvalidArgumentError
from edge_hired.sweep import parse_budgets, parse_strategies

T = TypeVar("T", int, float)


def _checked(text: str, convert: Callable[[str], T], accept: Callable[[T], bool], what: str) -> T:
    """`convert(text)` if it parses and `accept` holds, else 'expected <what>, got <text>'."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def ratio_arg(text: str) -> float:
    """argparse type: a budget ratio in (0, 1]."""
    return _checked(text, float, lambda v: math.isfinite(v) and 0 < v <= 1, "a number in (0, 1]")


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1] (NaN refused by the comparison)."""
    return _checked(text, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _checked(text, int, lambda v: v >= 1, "an integer >= 1")


def gib_arg(text: str) -> float:
    """argparse type: a positive, finite number of GiB."""
    return _checked(text, float, lambda v: math.isfinite(v) and v > 0, "a number of GiB > 0")


def seconds_arg(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    return _checked(text, float, lambda v: math.isfinite(v) and v > 0, "a number of seconds > 0")


def count_arg(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _checked(text, int, lambda v: v >= 0, "an integer >= 0")


def library_type(parse: Callable[[str], Any], text: str) -> Any:
    """Run a library parser as an argparse type: its one-line error becomes argparse's (exit 2)."""
    try:
        return parse(text)
    except InvalidArgumentError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def budgets_arg(text: str) -> tuple[str | float, ...]:
    """argparse type: 'full' and/or ratios in (0, 1], comma-separated (`edge_hired.sweep`)."""
    return library_type(parse_budgets, text)


def strategies_arg(text: str) -> tuple[str, ...]:
    """argparse type: token-dropping strategies, comma-separated (`edge_hired.sweep`)."""
    return library_type(parse_strategies, text)
