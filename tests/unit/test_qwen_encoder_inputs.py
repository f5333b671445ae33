"""Host-side inputs of the ONNX Qwen-VL encoder on grids whose answers hold by construction.

The comparison with the stock tower's own internals is in the integration tests of the same name.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_hired.errors import InvalidArgumentError
from edge_hired.runtime.qwen_encoder_inputs import grid_geometry, position_taps, window_ids


def test_bilinear_taps_by_construction() -> None:
    """A 4 x 4 grid over a 7-row table: align-corners puts patch r at 2r exactly (weight 1)."""
    geometry = grid_geometry((1, 4, 4), 16, 2)
    index, weight = position_taps(geometry, 7)
    assert np.allclose(weight.sum(axis=0), 1.0)
    corners = index[0].reshape(-1)
    rows, cols = np.divmod(geometry.patch_raster(), 4)
    assert corners.tolist() == (2 * rows * 7 + 2 * cols).tolist()
    assert weight[0].tolist() == [1.0] * 16


def test_window_ids_cut_short_at_the_edges() -> None:
    """6 x 10 patches -> 3 x 5 units, 2 x 2-unit windows (56 px / 14 / 2): 2 x 3 windows."""
    geometry = grid_geometry((1, 6, 10), 14, 2)
    ids = window_ids(geometry, 56)
    assert np.bincount(ids).tolist() == [16, 16, 8, 8, 8, 4]


@pytest.mark.parametrize("grid", [(2, 4, 4), (1, 5, 4), (1, 1, 4)])
def test_bad_grids_are_one_line_errors(grid: tuple[int, int, int]) -> None:
    with pytest.raises(InvalidArgumentError, match="grid_thw"):
        grid_geometry(grid, 16, 2)
