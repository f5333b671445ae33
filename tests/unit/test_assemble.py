"""Assembling the LLM's visual input: PruMerge's merge, projection in packing order, newlines and
the splice into the prompt, on tensors small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_hired.errors import InvalidArgumentError
from edge_hired.hired import Selection
from edge_hired.hired.geometry import NEWLINE
from edge_hired.runtime.assemble import (
    image_token_position,
    merged_features,
    splice_visual,
    visual_sequence,
)

#: features[p, t] = [10 p + t, -(10 p + t)]: 2 partitions x 4 tokens x 2 dims.
FEATURES = torch.tensor(
    [
        [[0.0, -0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]],
        [[10.0, -10.0], [11.0, -11.0], [12.0, -12.0], [13.0, -13.0]],
    ]
)


def selection(kept, order, merge=None) -> Selection:
    kept = tuple(np.array(k, dtype=np.int64) for k in kept)
    return Selection(
        strategy="prumerge" if merge is not None else "spatial",
        budget=sum(len(k) for k in kept),
        partition_budgets=np.array([len(k) for k in kept], dtype=np.int64),
        kept=kept,
        order=np.array(order, dtype=np.int64).reshape(-1, 2),
        content_scores=None,
        merge=merge,
    )


def merge_rows(indices, weights):
    return np.array(indices, dtype=np.int64), np.array(weights, dtype=np.float32)


#: Partition 0 keeps tokens 1 and 3: token 1 = 0.5 x t1 + 0.125 x t0 + 0.375 x t2, token 3 is
#: unmerged ([3, 3, 3], weights [1, 0, 0]). Partition 1 keeps token 0 = 0.5 x t0 + 0.5 x t2.
MERGED = selection(
    kept=[[1, 3], [0]],
    order=[[0, 1], [0, 3], [1, 0]],
    merge=(
        merge_rows([[1, 0, 2], [3, 3, 3]], [[0.5, 0.125, 0.375], [1.0, 0.0, 0.0]]),
        merge_rows([[0, 2, 3]], [[0.5, 0.5, 0.0]]),
    ),
)


def test_merge_replaces_each_kept_token_by_its_weighted_neighbours() -> None:
    merged = merged_features(FEATURES, MERGED)
    # 0.5 x 1 + 0.125 x 0 + 0.375 x 2 = 1.25; 0.5 x 10 + 0.5 x 12 + 0 x 13 = 11.0
    assert merged[0, 1].tolist() == [1.25, -1.25]
    assert merged[0, 3].tolist() == [3.0, -3.0]
    assert merged[1, 0].tolist() == [11.0, -11.0]
    for part, token in [(0, 0), (0, 2), (1, 1), (1, 2), (1, 3)]:  # dropped tokens: untouched
        assert merged[part, token].tolist() == FEATURES[part, token].tolist()
    assert FEATURES[1, 0].tolist() == [10.0, -10.0]  # the input is not modified


def test_uneven_weights_and_an_empty_partition() -> None:
    features = torch.arange(8, dtype=torch.float32).reshape(2, 4, 1)  # [p, t] = 4 p + t
    chosen = selection(
        kept=[[2], []],
        order=[[0, 2]],
        merge=(merge_rows([[2, 3, 0]], [[0.6, 0.3, 0.1]]), merge_rows(np.zeros((0, 3)), [])),
    )
    merged = merged_features(features, chosen)
    assert merged[0, 2].item() == pytest.approx(0.6 * 2 + 0.3 * 3 + 0.1 * 0)  # 2.1
    assert torch.equal(merged[1], features[1])


def test_without_a_merge_the_features_pass_through() -> None:
    plain = selection(kept=[[1], [0]], order=[[0, 1], [1, 0]])
    assert merged_features(FEATURES, plain) is FEATURES


def test_visual_sequence_projects_kept_tokens_in_packing_order_with_newlines() -> None:
    def projector(x: torch.Tensor) -> torch.Tensor:  # [k, 2] -> [k, 3]: (a, b, a + 2)
        return torch.stack([x[:, 0], x[:, 1], x[:, 0] + 2], dim=1)

    newline = torch.tensor([7.0, 7.0, 7.0], dtype=torch.float64)  # cast to the output dtype
    order = [[1, 0], [NEWLINE, NEWLINE], [0, 3], [0, 1], [NEWLINE, NEWLINE]]
    chosen = selection(kept=MERGED.kept, order=order, merge=MERGED.merge)
    out = visual_sequence(FEATURES, chosen, projector, newline)
    assert out.dtype == torch.float32
    assert out.tolist() == [
        [11.0, -11.0, 13.0],  # partition 1 token 0, merged to 11
        [7.0, 7.0, 7.0],
        [3.0, -3.0, 5.0],
        [1.25, -1.25, 3.25],  # partition 0 token 1, merged to 1.25
        [7.0, 7.0, 7.0],
    ]


def test_newlines_without_an_image_newline_are_refused() -> None:
    chosen = selection(kept=[[1], []], order=[[0, 1], [NEWLINE, NEWLINE]])
    with pytest.raises(InvalidArgumentError, match="no image_newline"):
        visual_sequence(FEATURES, chosen, lambda x: x, None)
    no_newline = selection(kept=[[1], []], order=[[0, 1]])
    assert visual_sequence(FEATURES, no_newline, lambda x: 2 * x, None).tolist() == [[2.0, -2.0]]


def test_the_visual_run_replaces_the_one_image_token() -> None:
    ids = torch.tensor([5, 9, 32000, 4])
    assert image_token_position(ids, 32000) == 2
    for bad in (torch.tensor([5, 9, 4]), torch.tensor([32000, 1, 32000])):
        with pytest.raises(InvalidArgumentError, match="image placeholders in the prompt"):
            image_token_position(bad, 32000)
    text = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [4.0, 4.0]], dtype=torch.float16)
    visual = torch.tensor([[8.0, 8.0], [9.0, 9.0]])
    spliced = splice_visual(text, 2, visual)
    assert spliced.shape == (1, 5, 2) and spliced.dtype == torch.float16
    assert spliced[0].tolist() == [[1.0, 1.0], [2.0, 2.0], [8.0, 8.0], [9.0, 9.0], [4.0, 4.0]]
