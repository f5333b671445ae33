"""Interleaved measurement for the comparison scripts: every setting warmed up once, then the
settings run round-robin, so load that comes and goes on a shared machine hits each alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def interleaved(runs: Mapping[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """One warm-up call per setting (discarded), then `repeats` round-robin rounds; per setting,
    the results in the order they were measured."""
    for run in runs.values():
        run()
    results: dict[str, list[T]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return results
