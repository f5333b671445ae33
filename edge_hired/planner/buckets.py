"""Shapes of the static KV cache: a request's context rounded up to one of a few buckets.

A compiled decode step is specialised to its cache's shape (`dynamic=False`), so every distinct
shape costs one compile (tens of seconds on a CPU, a CUDA graph capture on a GPU). Rounding the
context up to a bucket lets a handful of compiled shapes serve every request: 256, 512, 1024,
2048 tokens, then whole multiples of 1024 (at most a third wasted past 2048). Batches round up
to 1, 2, 4, 8, then multiples of 8 rows. Pure arithmetic: the planner and the runtime share it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_hired.errors import InvalidArgumentError, expected

SMALLEST_LENGTH = 256
DOUBLING_UP_TO = 2048
LENGTH_STEP = 1024
ROWS_DOUBLING_UP_TO = 8


@dataclass(frozen=True, order=True)
class Bucket:
    """One compiled shape: rows x positions of the preallocated cache."""

    rows: int
    length: int


def _round_up(count: int, smallest: int, doubling_up_to: int, step: int) -> int:
    """Doubling from `smallest` up to `doubling_up_to`, then whole multiples of `step`."""
    if count < 1:
        raise InvalidArgumentError(expected("a size to bucket", "a positive integer", count))
    size = smallest
    while size < count and size < doubling_up_to:
        size *= 2
    return size if count <= size else -(-count // step) * step


def length_bucket(positions: int) -> int:
    """The cache length that holds `positions` (prompt + kept visual + new tokens)."""
    return _round_up(positions, SMALLEST_LENGTH, DOUBLING_UP_TO, LENGTH_STEP)


def rows_bucket(rows: int) -> int:
    """The batch rows a compiled step is built for when `rows` decode together."""
    return _round_up(rows, 1, ROWS_DOUBLING_UP_TO, ROWS_DOUBLING_UP_TO)


def bucket_for(rows: int, positions: int) -> Bucket:
    """The bucket of a batch of `rows` whose longest row needs `positions`."""
    return Bucket(rows_bucket(rows), length_bucket(positions))
