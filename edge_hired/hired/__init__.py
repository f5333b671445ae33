"""HiRED core: choose which visual tokens of one image the LLM sees, and in which order.

`select_tokens` is the one public entry point. It is pure numpy (no torch, no onnxruntime, no
file I/O) so the same decision runs on a Jetson, in ONNX export checks and in unit tests: it
takes head-wise CLS attention rows and the image geometry and returns a `Selection` whose
`order` the runtime uses to gather the encoder's features. The rules are those of the
project's algorithm page (shared/HIRED.md); README.md summarises them.

Attention rows are cast to float32 and summed over heads in float32 (HIRED.md: "Compute in
fp32"); PruMerge's similarities and merge weights use float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_hired.errors import (
    AttentionShapeError,
    InvalidArgumentError,
    UnknownStrategyError,
    expected,
)
from edge_hired.hired import strategies
from edge_hired.hired.budget import check_alpha, resolve_budget
from edge_hired.hired.dart import check_features, dart
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.hired.prumerge import prumerge
from edge_hired.hired.strategies import MergeInfo, Plan

#: Strategies that read token features (`features=`) and not attention rows; the runtime passes
#: the features the LLM's tokens are made from (`runtime.prefix.token_features`).
FEATURE_STRATEGIES = ("dart",)
#: `resize` (native-resolution families): the runtime lowers the processor's pixel cap to the
#: budget (`hired.native_resize`) and keeps every token of the smaller image.
RESIZE = "resize"
STRATEGIES = (
    "full",
    "hired",
    "hired-ref",
    "spatial",
    "random",
    "prumerge",
    "prumerge+",
    *FEATURE_STRATEGIES,
    RESIZE,
)
NEWLINE_MODES = ("none", "rows")

__all__ = [
    "FEATURE_STRATEGIES",
    "RESIZE",
    "STRATEGIES",
    "Selection",
    "check_strategy",
    "select_tokens",
]


@dataclass(frozen=True, eq=False)
class Selection:
    """The tokens kept for one image and the order the LLM receives them in."""

    strategy: str
    budget: int  # effective budget B (for prumerge: the adaptive count kept)
    partition_budgets: np.ndarray  # [P] int64 tokens given to each partition
    kept: tuple[np.ndarray, ...]  # per partition: ascending unique valid int64 indices
    order: np.ndarray  # [L, 2] int64 (partition, token); NEWLINE rows are (-1, -1)
    content_scores: np.ndarray | None  # [P] int64 S[p] for hired / hired-ref, else None
    merge: MergeInfo | None  # prumerge only: per partition (indices, weights) [K, k + 1]
    num_valid: int = 0  # valid tokens of the image (what `full` keeps)
    geometry: ImageGeometry | None = None  # where `order`'s tokens sit (OneVision's resize)

    @property
    def num_kept(self) -> int:
        """Visual tokens kept (newlines excluded)."""
        return int(sum(len(k) for k in self.kept))

    @property
    def dropped_any(self) -> bool:
        """Whether any valid token is missing from the selection."""
        return self.num_kept < self.num_valid


@dataclass(frozen=True)
class _Inputs:
    """Validated arguments handed to a strategy."""

    geometry: ImageGeometry
    s_init: np.ndarray | None
    importance: np.ndarray | None
    budget: int
    alpha: float
    seed: int
    keys: np.ndarray | None
    features: np.ndarray | None = None


_RUNNERS: dict[str, Callable[[_Inputs], Plan]] = {
    "full": lambda x: strategies.full(x.geometry),
    "hired": lambda x: strategies.hired(x.geometry, x.s_init, x.importance, x.budget, x.alpha),
    "hired-ref": lambda x: strategies.hired_ref(
        x.geometry, x.s_init, x.importance, x.budget, x.alpha
    ),
    "spatial": lambda x: strategies.spatial(x.geometry, x.s_init, x.budget, x.alpha),
    "random": lambda x: strategies.random_tokens(x.geometry, x.s_init, x.budget, x.alpha, x.seed),
    "prumerge": lambda x: prumerge(x.geometry, x.importance, x.keys, plus=False),
    "prumerge+": lambda x: prumerge(x.geometry, x.importance, x.keys, plus=True),
    "dart": lambda x: dart(x.geometry, x.features, x.budget),
    RESIZE: lambda x: strategies.full(x.geometry),  # the geometry is already the resized one
}
_NEEDS_INIT = ("hired", "hired-ref", "spatial", "random")
_NEEDS_FINAL = ("hired", "hired-ref", "prumerge", "prumerge+")


def select_tokens(
    geometry: ImageGeometry,
    strategy: str,
    cls_init: Any,
    cls_final: Any,
    *,
    ratio: float | None = None,
    tokens: int | None = None,
    cap: int | None = None,
    alpha: float = 0.5,
    newline: str = "none",
    seed: int = 0,
    keys: Any = None,
    features: Any = None,
) -> Selection:
    """Select and order the visual tokens of one image.

    `cls_init` / `cls_final`: the attention signal per head, [P, heads, N], of the initial and
    the feature layer: CLS rows (CLIP) or the attention each patch receives (SigLIP, HIRED.md
    "Encoders without a CLS token"); the core treats both alike. Either may be None where
    the strategy does not read it (both for `full`, `cls_init` for prumerge).
    `keys`: final-layer keys [P, N, Dk], prumerge only.
    `features`: token features [P, N, D], dart only (its pivots and duplication read them).
    Budget arguments are validated for every strategy but only used by the budgeted ones
    (`full` keeps every valid token, prumerge's count is adaptive).

    Raises UnknownStrategyError, BudgetError (ratio / tokens / cap / alpha), AttentionShapeError
    (attention or keys of the wrong shape, non-finite, or head counts that differ) and
    InvalidArgumentError (newline, seed); every message reads "what: expected X, got Y".
    """
    _check_choice(strategy, newline)
    inputs = _Inputs(
        geometry,
        _head_sum("cls_init", cls_init, geometry, strategy in _NEEDS_INIT),
        _visible(geometry, _head_sum("cls_final", cls_final, geometry, strategy in _NEEDS_FINAL)),
        resolve_budget(geometry, ratio, tokens, cap),
        float(check_alpha(alpha)),
        _check_seed(seed),
        _check_keys(keys, geometry) if strategy.startswith("prumerge") else None,
        check_features(features, geometry) if strategy in FEATURE_STRATEGIES else None,
    )
    _check_heads(cls_init, cls_final)
    return _selection(inputs, strategy, _RUNNERS[strategy](inputs), newline)


def _selection(inputs: _Inputs, strategy: str, plan: Plan, newline: str) -> Selection:
    """Pack a plan: stock order when nothing is dropped, else the requested newline mode."""
    num_valid = int(inputs.geometry.valid_counts().sum())
    num_kept = sum(len(k) for k in plan.kept)
    order = inputs.geometry.packing_order(
        list(plan.kept), _mode(strategy, newline, num_kept, num_valid)
    )
    budget = {"full": num_valid, "prumerge": num_kept, "prumerge+": num_kept}.get(
        strategy, inputs.budget
    )
    return Selection(
        strategy,
        budget,
        plan.partition_budgets,
        plan.kept,
        order,
        plan.content_scores,
        plan.merge,
        num_valid,
        inputs.geometry,
    )


def _mode(strategy: str, newline: str, num_kept: int, num_valid: int) -> str:
    """hired-ref never has newlines; anything keeping every valid token is the stock model."""
    if strategy == "hired-ref":
        return "none"
    return "stock" if num_kept == num_valid else newline


def check_strategy(strategy: object) -> str:
    """`strategy` if it is one of STRATEGIES, else UnknownStrategyError listing them."""
    if strategy not in STRATEGIES:
        raise UnknownStrategyError(
            expected("strategy", f"one of {', '.join(STRATEGIES)}", strategy)
        )
    return strategy


def _check_choice(strategy: object, newline: object) -> None:
    """Known strategy and newline mode, else the typed error."""
    if strategy not in FEATURE_STRATEGIES:
        check_strategy(strategy)
    if newline not in NEWLINE_MODES:
        raise InvalidArgumentError(expected("newline", "'none' or 'rows'", newline))


def _check_seed(seed: object) -> int:
    """A non-negative integer seed."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(expected("seed", "a non-negative integer", seed))
    return int(seed)


def _head_sum(name: str, rows: Any, geometry: ImageGeometry, required: bool) -> np.ndarray | None:
    """Validate [P, heads, N] attention rows and sum them over heads in float32."""
    if rows is None and not required:
        return None
    shape = f"[P, heads, N] = [{geometry.num_partitions}, *, {geometry.tokens_per_partition}]"
    array = np.asarray(rows) if rows is not None else None
    want = (geometry.num_partitions, geometry.tokens_per_partition)
    if array is None or array.ndim != 3 or (array.shape[0], array.shape[2]) != want:
        raise AttentionShapeError(expected(name, shape, None if array is None else array.shape))
    if array.shape[1] < 1:
        raise AttentionShapeError(expected(name, shape, array.shape))
    if array.dtype.kind not in "fiu":
        raise AttentionShapeError(expected(name, "real-valued attention", str(array.dtype)))
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise AttentionShapeError(expected(name, "finite values", f"{bad} non-finite"))
    return values.sum(axis=1, dtype=np.float32)


def _visible(geometry: ImageGeometry, scores: np.ndarray | None) -> np.ndarray | None:
    """Feature-layer scores as the LLM-visible positions carry them (OneVision's resize)."""
    return None if scores is None else geometry.feature_scores(scores)


def _check_heads(cls_init: Any, cls_final: Any) -> None:
    """Both attention inputs come from one encoder: the same number of heads."""
    if cls_init is None or cls_final is None:
        return
    h_init, h_final = np.shape(cls_init)[1], np.shape(cls_final)[1]
    if h_init != h_final:
        raise AttentionShapeError(expected("cls_final heads", f"{h_init} (as cls_init)", h_final))


def _check_keys(keys: Any, geometry: ImageGeometry) -> np.ndarray:
    """Final-layer keys [P, N, Dk], finite, required by prumerge / prumerge+."""
    p, n = geometry.num_partitions, geometry.tokens_per_partition
    shape = f"[P, N, Dk] = [{p}, {n}, *] (required for prumerge)"
    array = None if keys is None else np.asarray(keys)
    if array is None or array.ndim != 3 or array.shape[:2] != (p, n) or array.shape[2] < 1:
        raise AttentionShapeError(expected("keys", shape, None if array is None else array.shape))
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise AttentionShapeError(expected("keys", "finite real values", str(array.dtype)))
    return array
