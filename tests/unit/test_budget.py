"""Budget resolution and the exact integer splits of HiRED steps 1 and 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_hired.errors import BudgetError
from edge_hired.hired.budget import (
    largest_remainder,
    resolve_budget,
    split_full_share,
)
from edge_hired.hired.geometry import anyres_geometry, single_geometry

SQUARE = anyres_geometry((672, 672))  # 2x2 grid, 5 x 576 tokens, all valid
PADDED = anyres_geometry((200, 300))  # 1x2 grid, valid [576, 432, 432] = 1440


# --- resolve_budget ---------------------------------------------------------------------------


def test_ratio_is_floor_of_r_times_partitions_times_n() -> None:
    assert resolve_budget(SQUARE, ratio=0.1) == 288  # 0.1 * 5 * 576 = 288
    assert resolve_budget(SQUARE, ratio=0.2) == 576
    assert resolve_budget(SQUARE, ratio=0.5) == 1440
    assert resolve_budget(SQUARE, ratio=0.0005) == 1  # 1.44 -> 1


def test_ratio_is_read_as_the_decimal_written() -> None:
    # 0.29 * 100 is 28.999999999999996 in binary floats; the user meant 29 tokens.
    geometry = single_geometry((100, 100), crop_size=140, patch_size=14)  # N = 100
    assert geometry.tokens_per_partition == 100
    assert resolve_budget(geometry, ratio=0.29) == 29


def test_smallest_budget_wins_and_valid_tokens_bound_it() -> None:
    assert resolve_budget(SQUARE, ratio=0.5, tokens=1000, cap=700) == 700
    assert resolve_budget(SQUARE, ratio=0.1, tokens=1000, cap=700) == 288
    assert resolve_budget(SQUARE, tokens=5) == 5
    assert resolve_budget(PADDED, tokens=10_000) == 1440
    assert resolve_budget(PADDED, ratio=1.0) == 1440  # 1728 > 1440 valid
    assert resolve_budget(PADDED) == 1440
    assert resolve_budget(single_geometry((10, 20))) == 576


def test_numpy_scalars_are_accepted() -> None:
    assert resolve_budget(SQUARE, ratio=np.float32(0.5), tokens=np.int64(100)) == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": 0.0},
        {"ratio": -0.1},
        {"ratio": 1.5},
        {"ratio": float("nan")},
        {"ratio": float("inf")},
        {"ratio": True},
        {"ratio": "0.5"},
        {"ratio": 1e-9},  # rounds to zero tokens
        {"tokens": 0},
        {"tokens": -3},
        {"tokens": 10.0},
        {"tokens": True},
        {"tokens": float("nan")},
        {"cap": 0},
        {"cap": False},
        {"cap": float("inf")},
    ],
)
def test_bad_budgets_raise_budget_error(kwargs: dict) -> None:
    with pytest.raises(BudgetError, match="expected"):
        resolve_budget(SQUARE, **kwargs)


# --- split_full_share (step 1) ----------------------------------------------------------------


def test_full_share_default_alpha() -> None:
    assert split_full_share(101, 0.5, 576, 2304) == (50, 51)  # floor(50.5) = 50


def test_full_share_above_n_goes_to_sub_images() -> None:
    # floor(0.5 * 2000) = 1000 > N = 576: the full image keeps 576, the rest goes to the subs.
    assert split_full_share(2000, 0.5, 576, 2304) == (576, 1424)
    assert split_full_share(1000, 1.0, 576, 2304) == (576, 424)


def test_full_share_sub_surplus_goes_back_to_full_image() -> None:
    # alpha = 0: B_full = 0, B_sub = 700 but the subs hold only 300 valid -> 400 back to full.
    assert split_full_share(700, 0.0, 576, 300) == (400, 300)
    # Padded 1x2 image: B = 1000, alpha = 0.25 -> 250 / 750, subs hold 432 + 432 = 864: fine.
    assert split_full_share(1000, 0.25, 576, 864) == (250, 750)
    # Extreme strip with no valid sub-image token: everything is the full image's.
    assert split_full_share(345, 0.5, 576, 0) == (345, 0)


def test_full_share_uses_the_decimal_alpha() -> None:
    assert split_full_share(100, 0.29, 576, 2304) == (29, 71)  # not 28


def test_full_share_rejects_impossible_budget() -> None:
    with pytest.raises(BudgetError, match="expected"):
        split_full_share(1000, 0.5, 576, 300)
    with pytest.raises(BudgetError, match="expected"):
        split_full_share(10, 1.5, 576, 300)


# --- largest_remainder (step 3) ---------------------------------------------------------------


def test_largest_remainder_plain() -> None:
    # 424 over [1, 1, 1, 2]: quotas 84.8 84.8 84.8 169.6 -> floors 84 84 84 169 (421),
    # 3 left go to the largest fractions .8 .8 .8 (indices 0, 1, 2).
    assert largest_remainder(424, [1, 1, 1, 2], [576] * 4).tolist() == [85, 85, 85, 169]


def test_largest_remainder_ties_go_to_lower_index() -> None:
    # 10 over three equal weights: 3.33 each, one left over -> index 0.
    assert largest_remainder(10, [1, 1, 1], [100] * 3).tolist() == [4, 3, 3]
    # 5 over [1, 1]: 2.5 each -> index 0 gets the extra one.
    assert largest_remainder(5, [1, 1], [9, 9]).tolist() == [3, 2]
    # 2 over [1, 1, 1, 1]: 0.5 each -> indices 0 and 1.
    assert largest_remainder(2, [3, 3, 3, 3], [9] * 4).tolist() == [1, 1, 0, 0]


def test_largest_remainder_cap_redistributes_by_weight() -> None:
    # 10 over [5, 1, 0] capped [3, 100, 100]: quotas 8.33 1.67 0 -> 8 2 0 after rounding;
    # index 0 is capped at 3, its 5 surplus goes to the only other weighted part (index 1).
    assert largest_remainder(10, [5, 1, 0], [3, 100, 100]).tolist() == [3, 7, 0]
    # 12 over [6, 3, 1] capped [2, 100, 100]: 7.2 3.6 1.2 -> 7 4 1 (rem .2 .6 .2 -> idx 1);
    # cap 0 at 2, surplus 5 over [3, 1]: 3.75 1.25 -> 4 1 -> [2, 8, 2].
    assert largest_remainder(12, [6, 3, 1], [2, 100, 100]).tolist() == [2, 8, 2]


def test_largest_remainder_caps_repeat_until_placed() -> None:
    # 9 over [4, 4, 1] capped [2, 3, 9]: 4 4 1 -> 2 (surplus 2) 3 (surplus 1) 1;
    # surplus 3 -> only index 2 has room -> [2, 3, 4].
    assert largest_remainder(9, [4, 4, 1], [2, 3, 9]).tolist() == [2, 3, 4]


def test_largest_remainder_weighted_parts_full_then_by_room() -> None:
    # All weight on index 0 (cap 2); the rest goes to the zero-weight parts by their room 1:3.
    # 6 - 2 = 4 over room [1, 3] -> exactly [1, 3].
    assert largest_remainder(6, [1, 0, 0], [2, 1, 3]).tolist() == [2, 1, 3]


def test_largest_remainder_all_zero_weights_follow_caps() -> None:
    # 3 over caps [1, 3]: quotas 0.75 2.25 -> 0 2, leftover to .75 -> [1, 2].
    assert largest_remainder(3, [0, 0], [1, 3]).tolist() == [1, 2]
    # Padded valid counts 432 / 432 split 101 evenly-ish: 50.5 / 50.5 -> [51, 50].
    assert largest_remainder(101, [0, 0], [432, 432]).tolist() == [51, 50]


def test_largest_remainder_degenerate() -> None:
    assert largest_remainder(0, [], []).tolist() == []
    assert largest_remainder(0, [1, 2], [0, 0]).tolist() == [0, 0]
    assert largest_remainder(4, [0, 7], [4, 0]).tolist() == [4, 0]


@pytest.mark.parametrize(
    "args",
    [
        (5, [1, 1], [2, 2]),  # total above the caps
        (-1, [1], [1]),
        (1, [-1, 1], [1, 1]),
        (1, [float("nan"), 1], [1, 1]),
        (1, [1, 1, 1], [1, 1]),
    ],
)
def test_largest_remainder_rejects_bad_input(args: tuple) -> None:
    with pytest.raises(BudgetError, match="expected"):
        largest_remainder(*args)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 600)), min_size=1, max_size=6),
    st.floats(0, 1),
)
def test_largest_remainder_properties(parts: list[tuple[int, int]], fill: float) -> None:
    weights = [w for w, _ in parts]
    caps = [c for _, c in parts]
    total = math.floor(fill * sum(caps))
    split = largest_remainder(total, weights, caps)
    assert split.dtype == np.int64
    assert int(split.sum()) == total
    assert (split >= 0).all() and (split <= np.array(caps)).all()
    # A part with weight never gets less than the floor of its uncapped proportional share
    # unless it is full.
    if sum(weights):
        for w, c, got in zip(weights, caps, split, strict=True):
            assert got == c or got >= math.floor(total * w / sum(weights))
