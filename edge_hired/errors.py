"""Typed, user-facing errors.

Every error a user can cause (bad image, bad budget, wrong bundle) is an `EdgeHiredError`; the CLI
prints its message on one line and exits with code 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class EdgeHiredError(Exception):
    """Base of all errors caused by input rather than by a bug."""


class InvalidArgumentError(EdgeHiredError, ValueError):
    """An argument has the wrong value, type or shape."""


class BudgetError(InvalidArgumentError):
    """A token budget, ratio or alpha that cannot be honoured."""


class AttentionShapeError(InvalidArgumentError):
    """Attention rows whose shape does not match the image geometry."""


class UnknownStrategyError(InvalidArgumentError):
    """A token-selection strategy that does not exist."""


class ImageLoadError(EdgeHiredError):
    """An image file that is missing, unreadable, truncated or unsafe to decode."""


class ModelLoadError(EdgeHiredError):
    """A model directory or hub id that is not a supported LLaVA checkpoint."""


def expected(what: str, expectation: object, got: object) -> str:
    """Format the standard message: '<what>: expected <X>, got <Y>'."""
    return f"{what}: expected {expectation}, got {got!r}"
