"""PruMerge / PruMerge+: IQR outliers, key-similarity merging, PruMerge+'s strided tokens."""

from __future__ import annotations

import numpy as np
import pytest

from edge_hired.errors import AttentionShapeError
from edge_hired.hired import select_tokens
from edge_hired.hired.geometry import NEWLINE, ImageGeometry, anyres_geometry, single_geometry
from edge_hired.hired.prumerge import (
    MERGE_K,
    iqr_outliers,
    iqr_threshold,
    merge_rows,
    strided_tokens,
)

N = 576


def heads(scores: np.ndarray) -> np.ndarray:
    """[P, N] -> [P, 2, N] whose float32 head sum is exactly `scores`."""
    values = np.asarray(scores, dtype=np.float32)
    return np.repeat(values[:, None, :] / 2, 2, axis=1)


def spiky(geometry: ImageGeometry, spikes: dict[int, list[int]], seed: int = 0) -> np.ndarray:
    """Background in [0, 1) with value 50 at the given tokens of each partition, as [P, 2, N]."""
    rng = np.random.default_rng(seed)
    values = rng.random((geometry.num_partitions, N)).astype(np.float32)
    for part, tokens in spikes.items():
        values[part, tokens] = 50.0
    return heads(values)


def random_keys(geometry: ImageGeometry, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((geometry.num_partitions, N, 16)).astype(np.float32)


# --- IQR ---------------------------------------------------------------------------------------


def test_iqr_rule_hand_computed() -> None:
    # Sorted values 1..9, 100 (n = 10). Linear percentiles: position (n - 1) * q.
    #   Q1: 9 * 0.25 = 2.25 -> 3 + 0.25 * (4 - 3) = 3.25
    #   Q3: 9 * 0.75 = 6.75 -> 7 + 0.75 * (8 - 7) = 7.75
    #   IQR = 4.5, threshold = 7.75 + 1.5 * 4.5 = 14.5 -> only 100 (index 9) is an outlier.
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], dtype=np.float32)
    assert iqr_threshold(scores) == pytest.approx(14.5)
    assert iqr_outliers(scores, np.ones(10, bool)).tolist() == [9]


def test_iqr_uses_valid_tokens_only_and_falls_back_to_the_best() -> None:
    # Without index 9, values 1..9: Q1 = 3, Q3 = 7, IQR = 4, threshold 13 -> no outlier, so
    # the single highest-attention valid token (index 8) is kept.
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], dtype=np.float32)
    valid = np.ones(10, bool)
    valid[9] = False
    assert iqr_threshold(scores[:9]) == pytest.approx(13.0)
    assert iqr_outliers(scores, valid).tolist() == [8]


def test_iqr_threshold_is_strict_and_ties_go_low() -> None:
    flat = np.full(6, 2.0)
    assert iqr_threshold(flat) == 2.0
    assert iqr_outliers(flat, np.ones(6, bool)).tolist() == [0]  # fallback, lowest index
    assert iqr_outliers(flat, np.zeros(6, bool)).tolist() == []  # no valid token at all


# --- merging ----------------------------------------------------------------------------------


def constructed_keys() -> np.ndarray:
    """Six 2-D keys at known angles; magnitudes chosen so a dot product would rank differently."""
    angles = np.deg2rad([0, 10, 50, 20, 170, 30])
    lengths = np.array([1.0, 5.0, 100.0, 2.0, 10.0, 0.5])
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * lengths[:, None]


def test_merge_takes_the_most_cosine_similar_keys() -> None:
    # Token 0 (0 deg): cosine ranks 1 (10), 3 (20), 5 (30), 2 (50), 4 (170). Token 2 has the
    # largest dot product (100 * cos 50 = 64) but not the largest cosine.
    # k = 3 -> indices [0, 1, 3, 5]; attention [4, 1, 2, 3, 5, 6] -> weights [4, 1, 3, 6] / 14.
    attention = np.array([4, 1, 2, 3, 5, 6], dtype=np.float32)
    indices, weights = merge_rows(
        constructed_keys(), attention, np.array([0]), np.ones(6, bool), k=3
    )
    assert indices.tolist() == [[0, 1, 3, 5]]
    np.testing.assert_allclose(weights, [[4 / 14, 1 / 14, 3 / 14, 6 / 14]])


def test_merge_neighbours_are_valid_tokens_only() -> None:
    # Token 1 is padding: the neighbours of 0 become 3, 5, 2 -> weights [4, 3, 6, 2] / 15.
    attention = np.array([4, 1, 2, 3, 5, 6], dtype=np.float32)
    valid = np.array([True, False, True, True, True, True])
    indices, weights = merge_rows(constructed_keys(), attention, np.array([0, 4]), valid, k=3)
    assert indices[0].tolist() == [0, 3, 5, 2]
    np.testing.assert_allclose(weights[0], np.array([4, 3, 6, 2]) / 15)
    # Token 4 (170 deg): cosines 50 -> cos 120, 30 -> cos 140, 20 -> cos 150, 0 -> cos 170.
    assert indices[1].tolist() == [4, 2, 5, 3]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_merge_with_few_tokens_and_zero_attention() -> None:
    attention = np.zeros(6, dtype=np.float32)
    indices, weights = merge_rows(constructed_keys(), attention, np.array([2]), np.ones(6, bool))
    assert indices.shape == (1, 6)  # k = 32 but only 5 other valid tokens
    assert sorted(indices[0, 1:].tolist()) == [0, 1, 3, 4, 5]
    np.testing.assert_allclose(weights, np.full((1, 6), 1 / 6))  # all-zero attention: uniform
    empty_i, empty_w = merge_rows(
        constructed_keys(), attention, np.array([], int), np.ones(6, bool)
    )
    assert empty_i.shape == empty_w.shape == (0, 6)


def test_prumerge_through_the_public_call() -> None:
    geometry = anyres_geometry((672, 672))
    spikes = {0: [5, 77], 1: [100], 2: [3, 200, 401], 3: [], 4: [575]}
    final, keys = spiky(geometry, spikes), random_keys(geometry)
    selection = select_tokens(geometry, "prumerge", None, final, keys=keys, tokens=3)
    assert [k.tolist() for k in selection.kept][:3] == [[5, 77], [100], [3, 200, 401]]
    assert selection.kept[4].tolist() == [575]
    assert len(selection.kept[3]) == 1  # no outlier: its single best token
    assert selection.budget == selection.num_kept == int(selection.partition_budgets.sum())
    assert [len(k) for k in selection.kept] == selection.partition_budgets.tolist()
    assert selection.content_scores is None and selection.dropped_any
    assert NEWLINE not in selection.order
    for part, (kept, (indices, weights)) in enumerate(
        zip(selection.kept, selection.merge, strict=True)
    ):
        assert indices.shape == weights.shape == (len(kept), MERGE_K + 1)
        assert indices[:, 0].tolist() == kept.tolist()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
        assert (weights >= 0).all()
        for row, token in zip(indices, kept, strict=True):
            assert row[1:].tolist() == brute_neighbours(keys[part], int(token), MERGE_K)


def brute_neighbours(keys: np.ndarray, token: int, k: int) -> list[int]:
    """The k most cosine-similar other tokens, ties to the lower index."""
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    sims = unit.astype(np.float64) @ unit[token].astype(np.float64)
    ranked = sorted((i for i in range(len(keys)) if i != token), key=lambda i: (-sims[i], i))
    return ranked[:k]


def test_partition_without_outlier_keeps_its_best_token() -> None:
    geometry = single_geometry((336, 336))
    # A tent peaking at 42: -|t - 42| spans -533..0, Q3 + 1.5 IQR is far above 0, so no
    # token is an outlier and the peak is kept alone.
    final = heads(-np.abs(np.arange(N) - 42)[None, :])
    selection = select_tokens(geometry, "prumerge", None, final, keys=random_keys(geometry))
    assert selection.kept[0].tolist() == [42]
    flat = heads(np.full((1, N), 1.0))
    selection = select_tokens(geometry, "prumerge", None, flat, keys=random_keys(geometry))
    assert selection.kept[0].tolist() == [0]


def test_prumerge_keeps_only_valid_tokens_on_a_padded_image() -> None:
    geometry = anyres_geometry((200, 300))  # sub-images keep local columns 6..23 / 0..17
    valid = geometry.valid_mask()
    spikes = {1: [0, 30, 110], 2: [23, 40]}  # 0 (col 0 of sub 1), 23 (col 23 of sub 2): padding
    final, keys = spiky(geometry, spikes, seed=2), random_keys(geometry, seed=2)
    for strategy in ("prumerge", "prumerge+"):
        selection = select_tokens(geometry, strategy, None, final, keys=keys)
        for part, (kept, (indices, _)) in enumerate(
            zip(selection.kept, selection.merge, strict=True)
        ):
            assert valid[part, kept].all()
            assert valid[part, indices].all()
        assert {30, 110} <= set(selection.kept[1].tolist())
        assert 0 not in selection.kept[1] and 23 not in selection.kept[2]
        assert 40 in selection.kept[2].tolist()


# --- PruMerge+ --------------------------------------------------------------------------------


def test_strided_tokens() -> None:
    # K = 2: step = int(576 / 2) = 288, stride = 96 -> 0, 96, ..., 480.
    assert strided_tokens(N, 2, np.ones(N, bool)).tolist() == [0, 96, 192, 288, 384, 480]
    # K = 200: step = 2, stride = max(1, 0) = 1 -> every token.
    assert strided_tokens(N, 200, np.ones(N, bool)).size == N
    valid = np.ones(N, bool)
    valid[:100] = False
    assert strided_tokens(N, 2, valid).tolist() == [192, 288, 384, 480]


def test_prumerge_plus_adds_unmerged_strided_tokens() -> None:
    # Outliers 96 and 300 (K = 2) -> stride 96: 0, 96, 192, 288, 384, 480 join them.
    geometry = single_geometry((336, 336))
    final, keys = spiky(geometry, {0: [96, 300]}), random_keys(geometry)
    plain = select_tokens(geometry, "prumerge", None, final, keys=keys)
    plus = select_tokens(geometry, "prumerge+", None, final, keys=keys)
    assert plain.kept[0].tolist() == [96, 300]
    assert plus.kept[0].tolist() == [0, 96, 192, 288, 300, 384, 480]
    assert plus.budget == 7
    indices, weights = plus.merge[0]
    assert indices[:, 0].tolist() == plus.kept[0].tolist()
    for row, token in enumerate(plus.kept[0].tolist()):
        if token in (96, 300):  # outliers are merged exactly as in plain PruMerge
            position = plain.kept[0].tolist().index(token)
            np.testing.assert_array_equal(indices[row], plain.merge[0][0][position])
            np.testing.assert_allclose(weights[row], plain.merge[0][1][position])
        else:  # added spatial tokens keep their own features
            assert indices[row].tolist() == [token] * (MERGE_K + 1)
            assert weights[row].tolist() == [1.0] + [0.0] * MERGE_K


def test_prumerge_plus_keeping_everything_is_the_stock_order() -> None:
    # >= 97 outliers -> step <= 5 -> stride 1: every token is kept, so the order is stock.
    geometry = anyres_geometry((336, 672))
    spikes = {p: list(range(0, 576, 4))[:120] for p in range(3)}
    selection = select_tokens(
        geometry, "prumerge+", None, spiky(geometry, spikes), keys=random_keys(geometry)
    )
    assert not selection.dropped_any
    stock = geometry.packing_order([np.arange(N)] * 3, "stock")
    np.testing.assert_array_equal(selection.order, stock)


# --- arguments --------------------------------------------------------------------------------


def test_keys_are_required_and_checked() -> None:
    geometry = single_geometry((336, 336))
    final = spiky(geometry, {0: [1]})
    with pytest.raises(AttentionShapeError, match="expected") as info:
        select_tokens(geometry, "prumerge", None, final)
    assert "keys" in str(info.value)
    for bad in (np.zeros((1, N)), np.zeros((2, N, 8)), np.zeros((1, N, 0))):
        with pytest.raises(AttentionShapeError, match="expected"):
            select_tokens(geometry, "prumerge+", None, final, keys=bad)
    nan_keys = random_keys(geometry)
    nan_keys[0, 3, 1] = np.nan
    with pytest.raises(AttentionShapeError, match="expected"):
        select_tokens(geometry, "prumerge", None, final, keys=nan_keys)
    with pytest.raises(AttentionShapeError, match="expected"):
        select_tokens(geometry, "prumerge", None, None, keys=random_keys(geometry))
