"""Device paths a CPU can still check: tensors on the meta device stand in for CUDA ones.

A meta tensor has a device other than the CPU and no data, so any host tensor mixed into an
operation on it raises, just as a CPU tensor mixed into a CUDA one does.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_hired.hired import select_tokens
from edge_hired.hired.geometry import anyres_geometry
from edge_hired.runtime.assemble import merged_features, visual_sequence

PINPOINTS = ((336, 672), (672, 336), (672, 672))


def _prumerge_selection():
    geometry = anyres_geometry((336, 336), PINPOINTS, 336, 14)
    rng = np.random.default_rng(0)
    parts, n = geometry.num_partitions, 576
    rows = rng.random((parts, 2, n)).astype(np.float32)
    rows[:, :, :5] = 50.0  # clear outliers, so PruMerge keeps (and merges into) some tokens
    keys = rng.standard_normal((parts, n, 8)).astype(np.float32)
    return select_tokens(geometry, "prumerge", rows, rows, keys=keys), parts, n


def test_prumerge_merge_runs_on_the_features_device() -> None:
    selection, parts, n = _prumerge_selection()
    assert selection.merge is not None
    features = torch.zeros(parts, n, 8, device="meta")
    merged = merged_features(features, selection)
    assert merged.device.type == "meta"
    sequence = visual_sequence(features, selection, lambda x: x, None)
    assert sequence.device.type == "meta"
    assert sequence.shape[0] == selection.num_kept
