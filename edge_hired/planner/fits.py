"""Least-squares polynomial fits of measured timings, and their evaluation.

`profile calibrate` times prefill at several LLM input lengths and fits `a + b*n + c*n^2`
(attention is quadratic in n, the matmuls linear); the encoder and decode are fitted with lines.
The coefficients are stored in the profile, lowest power first, and evaluated here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_hired.errors import InvalidArgumentError, expected


def fit_polynomial(xs: Sequence[float], ys: Sequence[float], degree: int) -> tuple[float, ...]:
    """Coefficients (lowest power first) of the least-squares polynomial through (xs, ys).

    Needs more distinct xs than the degree: a fit through too few points is not a measurement.
    """
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidArgumentError(expected("timings", "equal-length lists", (len(x), len(y))))
    if len(np.unique(x)) <= degree:
        need = f"at least {degree + 1} distinct lengths for degree {degree}"
        raise InvalidArgumentError(expected("fit points", need, len(np.unique(x))))
    design = np.vander(x, degree + 1, increasing=True)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return tuple(float(c) for c in coefficients)


def evaluate(coefficients: Sequence[float], x: float) -> float:
    """The polynomial at x (coefficients lowest power first)."""
    return float(sum(c * x**power for power, c in enumerate(coefficients)))
