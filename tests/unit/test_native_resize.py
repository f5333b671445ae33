"""The resize baseline's pixel cap: the most tokens without exceeding the budget."""

from __future__ import annotations

import pytest

from edge_hired.errors import BudgetError
from edge_hired.hired.native_geometry import native_geometry, smart_resize
from edge_hired.hired.native_resize import resize_limits, tokens_under

SIZES = [(560, 800), (1344, 1344), (300, 2000), (1080, 1920), (448, 224)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("share", [0.1, 0.2, 0.5, 1.0])
def test_resize_keeps_at_most_the_budget_and_no_larger_cap_does_better(
    size: tuple[int, int], share: float
) -> None:
    geometry = native_geometry(size)
    budget = max(1, int(geometry.num_tokens * share))
    low, cap = resize_limits(geometry, budget, 65536)
    got = tokens_under(geometry, low, cap)
    assert got <= budget
    # every cap on the searched grid gives no more tokens within the budget
    for other in range(budget * 1024, 4 * budget * 1024 + 1, 1024):
        count = tokens_under(geometry, min(65536, other), other)
        assert count > budget or count <= got


def test_the_tokens_are_smart_resize_s_over_the_merged_factor() -> None:
    geometry = native_geometry((560, 800))
    height, width = smart_resize(560, 800, 32, 1024, 90 * 1024)
    # beta = sqrt(560 x 800 / 92160) = 2.2048: floor(7.94) x floor(11.34) = 7 x 11 units
    assert tokens_under(geometry, 1024, 90 * 1024) == (height // 32) * (width // 32) == 77
    low, cap = resize_limits(geometry, 90, 65536)  # the search finds a cap with more
    assert tokens_under(geometry, low, cap) == 88


def test_full_budget_keeps_the_image_as_it_is() -> None:
    geometry = native_geometry((560, 800))
    low, cap = resize_limits(geometry, geometry.num_tokens, 65536)
    assert tokens_under(geometry, low, cap) == geometry.num_tokens == 450


def test_a_bad_budget_is_a_budget_error() -> None:
    with pytest.raises(BudgetError, match="resize budget"):
        resize_limits(native_geometry((560, 800)), 0, 65536)
