"""PruMerge and PruMerge+ (Shang et al. 2024, arXiv 2403.15388), for comparison with HiRED.

The paper describes the method in prose; this is edge-hired's precise definition, written from
that description (no published code used):

- Attention: a[p, t] = the final-layer CLS attention of token t, summed over heads.
- Outliers (the adaptive selection): per partition, over its *valid* tokens only, Q1 and Q3 are
  `np.percentile(a, [25, 75])` with numpy's default "linear" method (linear interpolation
  between order statistics); IQR = Q3 - Q1; a valid token is kept when a[t] > Q3 + 1.5 * IQR
  (strictly). A partition with no outlier keeps its single highest-attention valid token (ties
  to the lower index); a partition with no valid token keeps nothing.
- Merging: each kept token i absorbs its k = 32 most key-similar valid tokens: cosine
  similarity of the final-layer keys [P, N, Dk] (float64; a zero key has similarity 0), i
  itself excluded, ties to the lower index, fewer when the partition has fewer valid tokens.
  Neighbours may be kept tokens themselves. Row i of the merge is `indices = [i, n_1, ..., n_k]`
  (most similar first) with `weights` = their attention, clipped at 0 and normalised to sum 1
  (uniform if all are 0); the runtime computes x'_i = sum_j weights[j] * x[indices[j]].
- PruMerge+: with K >= 1 outliers (after the fallback), step = int(N / K), stride =
  max(1, step // 3), and the valid tokens of arange(0, N, stride) are kept as well. These added
  spatial tokens are not merged: their row is [j, j, ..., j] with weights [1, 0, ..., 0].
- The kept count is adaptive; token budgets do not apply to these strategies.
"""

from __future__ import annotations

import numpy as np

from edge_hired.hired.geometry import ImageGeometry
from edge_hired.hired.strategies import Plan, ranked_indices, top_indices

MERGE_K = 32
"""Neighbours each kept token absorbs."""

Merge = tuple[np.ndarray, np.ndarray]


def iqr_threshold(values: np.ndarray) -> float:
    """Q3 + 1.5 * IQR of `values`, quartiles by np.percentile's default linear method."""
    q1, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 75])
    return float(q3 + 1.5 * (q3 - q1))


def iqr_outliers(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid tokens above the IQR threshold (of the valid tokens), or the best one if none."""
    valid_idx = np.flatnonzero(valid)
    if valid_idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    values = np.asarray(scores)[valid_idx]
    outliers = valid_idx[values > iqr_threshold(values)]
    return (outliers if outliers.size else top_indices(scores, 1, valid)).astype(np.int64)


def strided_tokens(n_tokens: int, n_outliers: int, valid: np.ndarray) -> np.ndarray:
    """PruMerge+'s spatial tokens: valid ones of arange(0, N, max(1, int(N / K) // 3))."""
    stride = max(1, int(n_tokens / max(1, n_outliers)) // 3)
    picks = np.arange(0, n_tokens, stride, dtype=np.int64)
    return picks[np.asarray(valid)[picks]]


def unit_rows(keys: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64; zero rows stay zero."""
    keys = np.asarray(keys, dtype=np.float64)
    norms = np.linalg.norm(keys, axis=1, keepdims=True)
    return np.divide(keys, norms, out=np.zeros_like(keys), where=norms > 0)


def merge_rows(
    keys: np.ndarray, attention: np.ndarray, kept: np.ndarray, valid: np.ndarray, k: int = MERGE_K
) -> Merge:
    """Merge indices and weights [K, k' + 1] for the kept tokens of one partition."""
    valid = np.asarray(valid, dtype=bool)
    width = max(0, min(k, int(valid.sum()) - 1)) + 1
    if len(kept) == 0:
        return np.zeros((0, width), dtype=np.int64), np.zeros((0, width), dtype=np.float64)
    unit = unit_rows(keys)
    rows = [_merge_row(unit, np.asarray(attention), int(i), valid, width - 1) for i in kept]
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def _merge_row(
    unit: np.ndarray, attention: np.ndarray, token: int, valid: np.ndarray, k: int
) -> Merge:
    """[token, its k most similar valid tokens] and their normalised attention weights."""
    allowed = valid.copy()
    allowed[token] = False
    indices = np.concatenate([[token], ranked_indices(unit @ unit[token], k, allowed)])
    weights = np.maximum(attention[indices].astype(np.float64), 0.0)
    total = weights.sum()
    weights = weights / total if total > 0 else np.full(indices.size, 1.0 / indices.size)
    return indices.astype(np.int64), weights


def prumerge_partition(
    keys: np.ndarray, attention: np.ndarray, valid: np.ndarray, plus: bool, k: int = MERGE_K
) -> tuple[np.ndarray, Merge]:
    """Kept tokens (ascending) of one partition and their merge rows."""
    outliers = iqr_outliers(attention, valid)
    merge = merge_rows(keys, attention, outliers, valid, k)
    if not plus or outliers.size == 0:
        return outliers, merge
    extra = np.setdiff1d(strided_tokens(len(valid), outliers.size, valid), outliers)
    return _with_unmerged(outliers, merge, extra.astype(np.int64))


def _with_unmerged(kept: np.ndarray, merge: Merge, extra: np.ndarray) -> tuple[np.ndarray, Merge]:
    """Add tokens that keep their own features (weight 1 on themselves), all rows ascending."""
    width = merge[0].shape[1]
    extra_indices = np.repeat(extra[:, None], width, axis=1)
    extra_weights = np.zeros((extra.size, width))
    extra_weights[:, 0] = 1.0
    tokens = np.concatenate([kept, extra])
    order = np.argsort(tokens, kind="stable")
    indices = np.concatenate([merge[0], extra_indices])[order]
    return tokens[order], (indices, np.concatenate([merge[1], extra_weights])[order])


def prumerge(
    geometry: ImageGeometry, importance: np.ndarray, keys: np.ndarray, plus: bool = False
) -> Plan:
    """PruMerge (plus=False) or PruMerge+ (plus=True) over every partition."""
    valid = geometry.valid_mask()
    parts = [prumerge_partition(keys[p], importance[p], valid[p], plus) for p in range(len(valid))]
    kept = tuple(part[0] for part in parts)
    counts = np.array([k.size for k in kept], dtype=np.int64)
    return Plan(kept, counts, None, tuple(part[1] for part in parts))
