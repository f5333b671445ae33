"""DART: duplication-aware token reduction (Wen et al. 2025, arXiv 2502.11494), on HiRED's budget.

DART argues that which tokens are *duplicated* matters more than which look important: pick a
few pivot tokens, then keep the tokens that duplicate the pivots least. This module's rule, for
one image with token features x (per-partition [P, N, D], only valid tokens take part):

1. **Pivots**: the `k = min(num_pivots, B)` tokens with the largest L2 norm of their features
   (the paper's default pivot rule is the norm of the tokens' key states: pass keys as the
   features to follow it exactly; with encoder outputs it is the same rule on those features).
   Ties go to the lower (partition, token) index.
2. **Duplication** of every other token: its largest cosine similarity to any pivot
   (a zero vector duplicates nothing: similarity 0).
3. **Keep** the pivots and the `B - k` least duplicated other tokens; equivalently drop the most
   duplicated until the budget holds. Ties go to the lower index.

The budget is the image's, as for every strategy (`resolve_budget`), and is spent over all
partitions at once: DART compares tokens across the whole image, so partitions get what their
tokens earn (`partition_budgets` reports it) rather than a pre-split share. With one partition
(Qwen, LLaVA-1.5) that is the global rule. Similarities are computed in float64.
"""

from __future__ import annotations

import numpy as np

from edge_hired.errors import AttentionShapeError, BudgetError, expected
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.hired.strategies import Plan, ranked_indices

#: Pivot tokens per image unless the caller says otherwise (capped by the budget).
DEFAULT_PIVOTS = 8


def check_features(features: object, geometry: ImageGeometry) -> np.ndarray:
    """Token features [P, N, D], finite and real, required by `dart`."""
    p, n = geometry.num_partitions, geometry.tokens_per_partition
    shape = f"[P, N, D] = [{p}, {n}, *] (required for dart)"
    array = None if features is None else np.asarray(features)
    if array is None or array.ndim != 3 or array.shape[:2] != (p, n) or array.shape[2] < 1:
        got = None if array is None else array.shape
        raise AttentionShapeError(expected("features", shape, got))
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise AttentionShapeError(expected("features", "finite real values", str(array.dtype)))
    return array


def pivots(features: np.ndarray, valid: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the `count` valid tokens of largest feature norm, best first."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return ranked_indices(np.linalg.norm(flat, axis=1), count, valid.reshape(-1))


def duplication(features: np.ndarray, pivot_ids: np.ndarray) -> np.ndarray:
    """[P x N] each token's largest cosine similarity to a pivot (0 for zero vectors)."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    if not len(pivot_ids):
        return np.zeros(len(flat))
    return (unit @ unit[pivot_ids].T).max(axis=1)


def dart(
    geometry: ImageGeometry, features: np.ndarray, budget: int, num_pivots: int = DEFAULT_PIVOTS
) -> Plan:
    """Keep `min(budget, valid)` tokens: the pivots, then the least duplicated (module rule)."""
    if isinstance(num_pivots, bool) or not isinstance(num_pivots, int) or num_pivots < 1:
        raise BudgetError(expected("num_pivots", "a positive integer", num_pivots))
    valid = geometry.valid_mask()
    total = min(int(budget), int(valid.sum()))
    chosen = pivots(features, valid, min(num_pivots, total))
    others = valid.reshape(-1).copy()
    others[chosen] = False
    rest = ranked_indices(-duplication(features, chosen), total - len(chosen), others)
    return _per_partition(geometry, np.concatenate([chosen, rest]))


def _per_partition(geometry: ImageGeometry, flat_ids: np.ndarray) -> Plan:
    """Split flat (partition x N + token) indices into ascending per-partition arrays."""
    n = geometry.tokens_per_partition
    parts = np.sort(flat_ids) // n
    kept = tuple(
        np.sort(flat_ids[flat_ids // n == p] % n).astype(np.int64)
        for p in range(geometry.num_partitions)
    )
    counts = np.bincount(parts, minlength=geometry.num_partitions).astype(np.int64)
    return Plan(kept, counts)
