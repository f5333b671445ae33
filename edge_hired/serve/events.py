"""What the worker tells a request, as small typed values (not `("token", ...)` tuples)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_hired.runtime.engine import Prefill


@dataclass(frozen=True)
class Started:
    """The request was prefilled (its first token follows)."""

    prefill: Prefill


@dataclass(frozen=True)
class Token:
    """One generated token id."""

    token_id: int


@dataclass(frozen=True)
class Done:
    """The request left the batch: "stop", "length" or "cancelled", after `generated` tokens."""

    reason: str
    generated: int = 0


@dataclass(frozen=True)
class Failed:
    """The request was refused or broke; `error` is the ApiError to answer with."""

    error: Exception


Event = Started | Token | Done | Failed
