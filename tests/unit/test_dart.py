"""DART (arXiv 2502.11494) as `edge_hired.hired.dart` states it, on hand-computed vectors.

Worked example: six tokens of a 2 x 3 merged grid, 2-D features, norms and cosines written out.

    token   feature   norm    cos to t0=(3,0)   cos to t5=(1,2)
    t0      (3, 0)    3.000    1                 0.447
    t1      (1, 0)    1.000    1.000             0.447
    t2      (0, 2)    2.000    0                 0.894
    t3      (1, 1)    1.414    0.707             0.949
    t4      (-1, 0)   1.000   -1                -0.447
    t5      (1, 2)    2.236    0.447             1

One pivot: the largest norm, t0. Duplication = cosine to t0: t1 1, t3 .707, t5 .447, t2 0,
t4 -1. Budget 3 keeps t0 + the two least duplicated (t4, t2) and drops t1, t3, t5; budget 4
also keeps t5. Two pivots: t0 and t5 (2.236, the next norm). Duplication = the larger cosine:
t1 1, t3 .949, t2 .894, t4 -.447. Budget 3 keeps t0, t5, t4; budget 4 adds t2.
The margins are 0.05 or more, so no CPU's rounding can change an outcome.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_hired.errors import AttentionShapeError, BudgetError
from edge_hired.hired import FEATURE_STRATEGIES, STRATEGIES, select_tokens
from edge_hired.hired.dart import dart, duplication, pivots
from edge_hired.hired.geometry import anyres_geometry
from edge_hired.hired.native_geometry import native_geometry

WORKED = np.array([[3, 0], [1, 0], [0, 2], [1, 1], [-1, 0], [1, 2]], dtype=np.float32)[None]
GEOMETRY = native_geometry((64, 96), 16, 2, 1, 10**8)  # 2 x 3 merge units


def test_the_worked_example_geometry_has_six_tokens() -> None:
    assert GEOMETRY.token_grid == (2, 3)


def test_pivots_are_the_largest_norms() -> None:
    valid = GEOMETRY.valid_mask()
    assert pivots(WORKED, valid, 1).tolist() == [0]
    assert pivots(WORKED, valid, 2).tolist() == [0, 5]


def test_duplication_is_the_largest_cosine_to_a_pivot() -> None:
    one = duplication(WORKED, np.array([0]))
    np.testing.assert_allclose(one, [1, 1, 0, 0.5**0.5, -1, 0.2**0.5])
    two = duplication(WORKED, np.array([0, 5]))
    np.testing.assert_allclose(two, [1, 1, 0.8**0.5, 0.9**0.5, -(0.2**0.5), 1])


@pytest.mark.parametrize(
    ("num_pivots", "budget", "kept"),
    [(1, 3, [0, 2, 4]), (1, 4, [0, 2, 4, 5]), (2, 3, [0, 4, 5]), (2, 4, [0, 2, 4, 5])],
)
def test_worked_example_keeps_pivots_and_the_least_duplicated(
    num_pivots: int, budget: int, kept: list[int]
) -> None:
    plan = dart(GEOMETRY, WORKED, budget, num_pivots=num_pivots)  # type: ignore[arg-type]
    assert plan.kept[0].tolist() == kept
    assert plan.partition_budgets.tolist() == [budget]


def test_select_tokens_runs_dart_with_features_and_exact_budget() -> None:
    selection = select_tokens(GEOMETRY, "dart", None, None, tokens=3, features=WORKED)  # type: ignore[arg-type]
    assert (selection.strategy, selection.budget, selection.num_kept) == ("dart", 3, 3)
    # the default 8 pivots are capped by the budget: all three are pivots, by norm t0, t5, t2
    assert selection.kept[0].tolist() == [0, 2, 5]
    assert selection.order.tolist() == [[0, 0], [0, 2], [0, 5]]


def test_dart_with_the_whole_budget_is_the_stock_sequence() -> None:
    selection = select_tokens(GEOMETRY, "dart", None, None, ratio=1.0, features=WORKED)  # type: ignore[arg-type]
    assert selection.kept[0].tolist() == list(range(6))
    assert not selection.dropped_any


def test_dart_without_features_is_a_one_line_error() -> None:
    with pytest.raises(AttentionShapeError, match="required for dart") as info:
        select_tokens(GEOMETRY, "dart", None, None, ratio=0.5)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    with pytest.raises(AttentionShapeError):
        select_tokens(GEOMETRY, "dart", None, None, ratio=0.5, features=WORKED[:, :5])  # type: ignore[arg-type]
    with pytest.raises(BudgetError):
        dart(GEOMETRY, WORKED, 3, num_pivots=0)  # type: ignore[arg-type]


def test_dart_is_a_user_strategy_that_reads_features() -> None:
    assert FEATURE_STRATEGIES == ("dart",)
    assert "dart" in STRATEGIES  # the runtime passes features: the CLI offers it


@pytest.mark.parametrize("budget", [1, 7, 100, 500, 2000, 5000])
def test_dart_across_partitions_keeps_exactly_the_budget_of_valid_tokens(budget: int) -> None:
    geometry = anyres_geometry((500, 1000))  # LLaVA-NeXT: padding rows are invalid
    valid = geometry.valid_mask()
    features = np.random.default_rng(4).normal(size=(*valid.shape, 8))
    selection = select_tokens(geometry, "dart", None, None, tokens=budget, features=features)
    assert selection.num_kept == min(budget, int(valid.sum()))
    assert sum(selection.partition_budgets.tolist()) == selection.num_kept
    for part, kept in enumerate(selection.kept):
        assert valid[part, kept].all()
        assert len(kept) == selection.partition_budgets[part]
