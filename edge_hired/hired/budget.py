"""Token budgets: resolve what the user asked for into one integer, then split it exactly.

HiRED promises a fixed visual-token count. The published code floors at every step and loses
the remainders; here every split is an integer split whose parts sum to the whole. Ratios and
alpha are read as the decimal the user wrote (0.29 is 29/100, not the binary float just below
it), so `floor(r * (1 + m) * N)` never loses a token to rounding noise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from edge_hired.errors import BudgetError, expected
from edge_hired.hired.geometry import ImageGeometry


def exact_fraction(value: float) -> Fraction:
    """The shortest decimal that round-trips to `value`, as an exact fraction."""
    return Fraction(repr(float(value)))


def _is_real(value: object) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_ratio(ratio: object) -> Fraction:
    """A finite ratio in (0, 1], else BudgetError."""
    if not _is_real(ratio) or not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise BudgetError(expected("budget ratio", "a finite number in (0, 1]", ratio))
    return exact_fraction(ratio)


def check_alpha(alpha: object) -> Fraction:
    """A finite full-image share in [0, 1], else BudgetError."""
    if not _is_real(alpha) or not math.isfinite(alpha) or not 0 <= alpha <= 1:
        raise BudgetError(expected("alpha", "a finite number in [0, 1]", alpha))
    return exact_fraction(alpha)


def check_count(name: str, value: object) -> int:
    """A positive integer token count (bools and floats rejected), else BudgetError."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise BudgetError(expected(name, "a positive integer", value))
    if value < 1:
        raise BudgetError(expected(name, "a positive integer", value))
    return int(value)


def ratio_tokens(geometry: ImageGeometry, ratio: object) -> int:
    """floor(r * ratio_base(geometry)), which must be at least one token."""
    base = ratio_base(geometry)
    count = math.floor(check_ratio(ratio) * base)
    if count < 1:
        raise BudgetError(expected("budget ratio", f"at least 1/{base}", ratio))
    return count


def ratio_base(geometry: ImageGeometry) -> int:
    """The tokens a budget ratio is a share of: (1 + m) x N, the paper's semantics.

    A OneVision grid shrunk by anyres_max is the exception: its encoder sees up to 36 tiles but
    the stock model feeds the full image plus the shrunk grid's positions (7,290 of 26,973 for a
    2304 x 2304 image), so a ratio is a share of those, as it is of the stock sequence elsewhere.
    """
    if geometry.resized is not None:
        rows, cols = geometry.resized
        return geometry.tokens_per_partition + rows * cols
    return geometry.num_partitions * geometry.tokens_per_partition


def resolve_budget(
    geometry: ImageGeometry,
    ratio: object = None,
    tokens: object = None,
    cap: object = None,
) -> int:
    """Effective budget B: the smallest of those given, never above the valid token count.

    With none given, every valid token is kept.
    """
    limits = [int(geometry.valid_counts().sum())]
    if ratio is not None:
        limits.append(ratio_tokens(geometry, ratio))
    if tokens is not None:
        limits.append(check_count("tokens", tokens))
    if cap is not None:
        limits.append(check_count("cap", cap))
    return min(limits)


def split_full_share(
    budget: int, alpha: object, n_tokens: int, valid_sub_total: int
) -> tuple[int, int]:
    """Step 1: (B_full, B_sub) with B_full = min(floor(alpha * B), N), surplus moving both ways.

    Whatever the full image cannot hold (above N) already falls to the sub-images; whatever the
    sub-images cannot hold (above their valid tokens) goes back to the full image.
    """
    if budget < 0 or budget > n_tokens + valid_sub_total:
        limit = n_tokens + valid_sub_total
        raise BudgetError(expected("budget", f"0..{limit} (the valid tokens)", budget))
    full = min(math.floor(check_alpha(alpha) * budget), n_tokens)
    sub = budget - full
    if sub > valid_sub_total:
        full, sub = full + sub - valid_sub_total, valid_sub_total
    return full, sub


def largest_remainder(
    total: int, weights: Sequence[float] | np.ndarray, caps: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Step 3: split `total` in proportion to `weights`, capped, as integers summing to total.

    Largest-remainder rounding with ties to the lower index. A part above its cap is clipped
    and the excess is split again among the parts with room, in proportion to their weights
    (to their remaining room if none of them has weight), until everything is placed. All-zero
    weights therefore split in proportion to the caps.
    """
    w, room = _check_split(total, weights, caps)
    alloc = [0] * len(w)
    remaining = total
    while remaining:
        shares = _proportional(remaining, _split_weights(w, room, alloc))
        remaining = 0
        for i, share in shares.items():
            give = min(share, room[i] - alloc[i])
            alloc[i] += give
            remaining += share - give
    return np.array(alloc, dtype=np.int64)


def _split_weights(w: list[Fraction], room: list[int], alloc: list[int]) -> dict[int, Fraction]:
    """Weights of the parts that still have room (their remaining room if all weights are 0)."""
    open_parts = [i for i in range(len(w)) if room[i] > alloc[i]]
    weighted = {i: w[i] for i in open_parts if w[i] > 0}
    return weighted or {i: Fraction(room[i] - alloc[i]) for i in open_parts}


def _proportional(total: int, weights: dict[int, Fraction]) -> dict[int, int]:
    """Largest-remainder split of `total` over `weights` (ties to the lower index)."""
    whole = sum(weights.values())
    quotas = {i: total * w / whole for i, w in weights.items()}
    parts = {i: math.floor(q) for i, q in quotas.items()}
    leftover = total - sum(parts.values())
    for i in sorted(quotas, key=lambda i: (-(quotas[i] - parts[i]), i))[:leftover]:
        parts[i] += 1
    return parts


def _check_split(
    total: int, weights: Sequence[float] | np.ndarray, caps: Sequence[int] | np.ndarray
) -> tuple[list[Fraction], list[int]]:
    """Validate a largest-remainder split and return exact weights and integer caps."""
    w_arr, cap_arr = np.asarray(weights, dtype=float).reshape(-1), np.asarray(caps).reshape(-1)
    if w_arr.shape != cap_arr.shape:
        raise BudgetError(expected("split weights", f"{cap_arr.size} (one per cap)", w_arr.size))
    if not (np.isfinite(w_arr).all() and (w_arr >= 0).all()):
        raise BudgetError(expected("split weights", "finite and >= 0", w_arr.tolist()))
    if (cap_arr < 0).any() or not 0 <= total <= int(cap_arr.sum()):
        limit = int(cap_arr[cap_arr > 0].sum())
        raise BudgetError(expected("split total", f"0..{limit} (the sum of the caps)", total))
    return [Fraction(float(x)) for x in w_arr], [int(c) for c in cap_arr]
