"""Token-selection strategies: which partition-local tokens each partition keeps.

Every strategy takes head-summed CLS attention (`s_init` from the initial layer, `importance`
from the feature layer, both [P, N]) and a resolved budget, and returns a `Plan`: per partition
the kept token indices (ascending, unique, valid), the per-partition budgets and, for HiRED, the
visual-content scores. Packing order is left to `edge_hired.hired.select_tokens`.

Selection is deterministic: top-k is a stable sort on (-score, index), so ties always go to the
lower index whatever the kernel, and a larger k keeps a superset of a smaller one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_hired.errors import BudgetError, expected
from edge_hired.hired.budget import check_alpha, largest_remainder, split_full_share
from edge_hired.hired.geometry import ImageGeometry

MergeInfo = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """What a strategy decided, before packing."""

    kept: tuple[np.ndarray, ...]
    partition_budgets: np.ndarray
    content_scores: np.ndarray | None = None
    merge: MergeInfo | None = None


def ranked_indices(
    scores: np.ndarray, k: int, allowed_mask: np.ndarray | None = None
) -> np.ndarray:
    """The k allowed indices with the highest scores, best first, ties to the lower index."""
    scores = np.asarray(scores)
    if scores.dtype.kind in "bu":  # negating unsigned values would wrap around
        scores = scores.astype(np.int64)
    allowed = np.ones(scores.shape, bool) if allowed_mask is None else np.asarray(allowed_mask)
    candidates = np.flatnonzero(allowed)
    if not 0 <= k <= candidates.size:
        raise BudgetError(expected("top-k size", f"0..{candidates.size} allowed tokens", k))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]].astype(np.int64)


def top_indices(scores: np.ndarray, k: int, allowed_mask: np.ndarray | None = None) -> np.ndarray:
    """The k allowed indices with the highest scores (ties to the lower index), ascending."""
    return np.sort(ranked_indices(scores, k, allowed_mask))


def highlight_count(alpha: object, n_tokens: int) -> int:
    """k = floor((1 - alpha) * N) highlighted layer-0 patches; N when alpha is 1."""
    share = 1 - check_alpha(alpha)
    return n_tokens if share == 0 else math.floor(share * n_tokens)


def content_scores(geometry: ImageGeometry, s_init: np.ndarray, alpha: object) -> np.ndarray:
    """S[p]: highlighted full-image patches whose centre lands in sub-image p (S[0] = 0)."""
    scores = np.zeros(geometry.num_partitions, dtype=np.int64)
    if not geometry.num_sub_images:
        return scores
    hot = top_indices(s_init[0], highlight_count(alpha, geometry.tokens_per_partition))
    owners = geometry.full_to_sub_image()[hot]
    return scores + np.bincount(owners, minlength=geometry.num_partitions).astype(np.int64)


def split_budget(
    geometry: ImageGeometry, budget: int, alpha: object, scores: np.ndarray
) -> np.ndarray:
    """Steps 1 and 3: exact per-partition budgets [P] that sum to `budget`."""
    valid = geometry.valid_counts()
    full, sub = split_full_share(budget, alpha, geometry.tokens_per_partition, int(valid[1:].sum()))
    subs = largest_remainder(sub, scores[1:], valid[1:])
    return np.concatenate([[full], subs]).astype(np.int64)


def select_top(importance: np.ndarray, budgets: np.ndarray, valid: np.ndarray) -> tuple:
    """Step 4: per partition, the B_p valid tokens of highest importance, ascending."""
    return tuple(top_indices(importance[p], int(b), valid[p]) for p, b in enumerate(budgets))


def full(geometry: ImageGeometry) -> Plan:
    """No dropping: every valid token of every partition."""
    valid = geometry.valid_mask()
    kept = tuple(np.flatnonzero(row).astype(np.int64) for row in valid)
    return Plan(kept, valid.sum(axis=1).astype(np.int64))


def hired(
    geometry: ImageGeometry, s_init: np.ndarray, importance: np.ndarray, budget: int, alpha: object
) -> Plan:
    """HiRED as HIRED.md defines it: exactly `budget` tokens (B never exceeds the valid count)."""
    scores = content_scores(geometry, s_init, alpha)
    budgets = split_budget(geometry, budget, alpha, scores)
    return Plan(select_top(importance, budgets, geometry.valid_mask()), budgets, scores)


def spatial(geometry: ImageGeometry, s_init: np.ndarray, budget: int, alpha: object) -> Plan:
    """HiRED's budget split, then B_p evenly spaced valid tokens per partition."""
    budgets = split_budget(geometry, budget, alpha, content_scores(geometry, s_init, alpha))
    kept = tuple(
        _strided(np.flatnonzero(row), int(b))
        for row, b in zip(geometry.valid_mask(), budgets, strict=True)
    )
    return Plan(kept, budgets)


def _strided(valid_idx: np.ndarray, count: int) -> np.ndarray:
    """`count` evenly spaced picks of `valid_idx`: positions floor((i + 0.5) * V / count)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    positions = ((2 * np.arange(count) + 1) * valid_idx.size) // (2 * count)
    return valid_idx[positions].astype(np.int64)


def random_tokens(
    geometry: ImageGeometry, s_init: np.ndarray, budget: int, alpha: object, seed: int
) -> Plan:
    """HiRED's budget split, then a seeded uniform choice of B_p valid tokens per partition.

    One `np.random.default_rng(seed)` draws the partitions in order 0..m.
    """
    budgets = split_budget(geometry, budget, alpha, content_scores(geometry, s_init, alpha))
    rng = np.random.default_rng(seed)
    kept = tuple(
        _choice(rng, np.flatnonzero(row), int(b))
        for row, b in zip(geometry.valid_mask(), budgets, strict=True)
    )
    return Plan(kept, budgets)


def _choice(rng: np.random.Generator, valid_idx: np.ndarray, count: int) -> np.ndarray:
    """`count` distinct picks of `valid_idx`, ascending."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(valid_idx, size=count, replace=False)).astype(np.int64)


def hired_ref(
    geometry: ImageGeometry, s_init: np.ndarray, importance: np.ndarray, budget: int, alpha: float
) -> Plan:
    """The published code's arithmetic, defects included, for reproducing the paper's numbers.

    B_full = min(floor(alpha * B), N) and B_sub = B - B_full (float arithmetic); content counts
    from contiguous raster chunks; sub budgets floor(fp32(count_p) / fp32(sum) * fp32(B_sub)),
    capped at N, remainders lost (all zero if no patch is highlighted); top-B_p over all N
    tokens, then tokens in padding discarded. The result can be below the budget.
    """
    n = geometry.tokens_per_partition
    b_full = min(math.floor(float(alpha) * budget), n)
    counts = _chunk_counts(geometry, s_init, alpha)
    budgets = np.concatenate([[b_full], _ref_sub_budgets(counts[1:], budget - b_full, n)])
    valid = geometry.valid_mask()
    kept = tuple(
        np.intersect1d(top_indices(importance[p], int(b)), np.flatnonzero(valid[p]))
        for p, b in enumerate(budgets)
    )
    return Plan(tuple(k.astype(np.int64) for k in kept), budgets.astype(np.int64), counts)


def _chunk_counts(geometry: ImageGeometry, s_init: np.ndarray, alpha: float) -> np.ndarray:
    """Highlighted tokens (top int(N * (1 - alpha))) per equal contiguous raster chunk."""
    n, m = geometry.tokens_per_partition, geometry.num_sub_images
    counts = np.zeros(geometry.num_partitions, dtype=np.int64)
    if not m:
        return counts
    hot = top_indices(s_init[0], int(n * (1 - float(alpha))))
    chunk = (hot * m) // n
    return counts + np.bincount(1 + chunk, minlength=m + 1).astype(np.int64)


def _ref_sub_budgets(counts: np.ndarray, b_sub: int, n_tokens: int) -> np.ndarray:
    """floor(count_p / sum * B_sub) in fp32, capped at N; zeros when nothing is highlighted."""
    total = counts.sum()
    if total == 0:
        return np.zeros(counts.size, dtype=np.int64)
    share = counts.astype(np.float32) / np.float32(total) * np.float32(b_sub)
    return np.minimum(np.floor(share).astype(np.int64), n_tokens)
