"""HiRED core: exact token counts, deterministic selection, content scores, packing, hired-ref."""

from __future__ import annotations

import math
import types
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.llava_next.modeling_llava_next import (
    get_anyres_image_grid_shape,
    unpad_image,
)

from edge_hired.errors import (
    AttentionShapeError,
    BudgetError,
    InvalidArgumentError,
    UnknownStrategyError,
)
from edge_hired.hired import STRATEGIES, Selection, select_tokens
from edge_hired.hired.geometry import (
    LLAVA_V16_PINPOINTS,
    NEWLINE,
    ImageGeometry,
    anyres_geometry,
    single_geometry,
)
from edge_hired.hired.strategies import top_indices

N = 576


def heads(scores: np.ndarray, count: int = 2) -> np.ndarray:
    """[P, N] scores -> [P, heads, N] rows whose float32 head sum is exactly `scores`."""
    values = np.asarray(scores, dtype=np.float32)
    return np.repeat(values[:, None, :] / count, count, axis=1)


def separated(geometry: ImageGeometry, seed: int) -> np.ndarray:
    """Well-separated random attention: a permutation of 0..P*N-1, as [P, 2, N]."""
    p = geometry.num_partitions
    rng = np.random.default_rng(seed)
    return heads(rng.permutation(p * geometry.tokens_per_partition).reshape(p, -1))


def grid_scores(rows: int, cols: int, hot: list[tuple[int, int]]) -> np.ndarray:
    """A rows x cols map, 1 at the hot (row, col) patches, 0 elsewhere, raster-flattened."""
    values = np.zeros((rows, cols), dtype=np.float32)
    for r, c in hot:
        values[r, c] = 1.0
    return values.reshape(-1)


def all_valid(geometry: ImageGeometry) -> list[np.ndarray]:
    return [np.flatnonzero(row) for row in geometry.valid_mask()]


def assert_well_formed(selection: Selection, geometry: ImageGeometry) -> None:
    """Kept indices unique, ascending, valid, int64; order holds each kept token once."""
    valid = geometry.valid_mask()
    assert len(selection.kept) == geometry.num_partitions
    for part, kept in enumerate(selection.kept):
        assert kept.dtype == np.int64
        assert np.all(np.diff(kept) > 0)
        assert valid[part, kept].all()
    visual = selection.order[selection.order[:, 0] != NEWLINE]
    pairs = {(p, int(t)) for p, kept in enumerate(selection.kept) for t in kept}
    assert len(visual) == selection.num_kept == len(pairs)
    assert {tuple(row) for row in visual.tolist()} == pairs


# --- properties -------------------------------------------------------------------------------

SIDES = st.one_of(st.integers(1, 4000), st.sampled_from([1, 2, 3, 335, 336, 337, 672, 4000]))
BUDGETS = st.one_of(
    st.builds(lambda r: {"ratio": r}, st.floats(0.002, 1.0)),
    st.builds(lambda t: {"tokens": t}, st.integers(1, 3500)),
)


def hf_layout(size: tuple[int, int], anyres: bool) -> tuple[int, int, np.ndarray | None]:
    """(partitions, grid columns, stitched raster indices that survive unpadding) of a
    (height, width) image, from transformers' own LLaVA-NeXT functions, not from our geometry.

    The stitched map is rows x cols sub-image grids of 24 x 24 patches each; its entry at (r, c)
    is r * width + c, so what `unpad_image` leaves says which stitched tokens the LLM sees.
    """
    if not anyres:
        return 1, 0, None  # LLaVA-1.5: one 24 x 24 partition, every token valid
    pins = [list(p) for p in LLAVA_V16_PINPOINTS]
    rows, cols = get_anyres_image_grid_shape(list(size), pins, 336)
    width = cols * 24
    stitched = torch.arange(rows * 24 * width).reshape(1, rows * 24, width)
    return 1 + rows * cols, cols, unpad_image(stitched, list(size))[0].numpy()


def expected_budget(size: tuple[int, int], anyres: bool, budget: dict) -> int:
    """min(B, valid) with B = floor(r * P * 576) (r as written) or the absolute count."""
    partitions, _, stitched = hf_layout(size, anyres)
    valid = 576 + (0 if stitched is None else stitched.size)
    if "ratio" in budget:
        wanted = math.floor(Fraction(repr(budget["ratio"])) * partitions * 576)
    else:
        wanted = budget["tokens"]
    return min(wanted, valid)


def expected_order(
    size: tuple[int, int], anyres: bool, kept: tuple[np.ndarray, ...], mode: str
) -> np.ndarray:
    """The (partition, token) order transformers' packing gives the kept tokens: the full image
    in raster order, then the unpadded stitched rows, with a newline after every row ("stock"),
    after rows that kept a token ("rows") or none ("none")."""
    order = [(0, int(t)) for t in kept[0]]
    _, cols, stitched = hf_layout(size, anyres)
    if stitched is not None:
        kept_pairs = {(p, int(t)) for p, part in enumerate(kept) for t in part}
        width = cols * 24
        for stitched_row in stitched:
            chosen = []
            for index in stitched_row.tolist():
                r, c = divmod(index, width)
                pair = (1 + (r // 24) * cols + c // 24, (r % 24) * 24 + c % 24)
                if pair in kept_pairs:
                    chosen.append(pair)
            order += chosen
            if mode == "stock" or (mode == "rows" and chosen):
                order.append((NEWLINE, NEWLINE))
    return np.array(order, dtype=np.int64).reshape(-1, 2)


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(SIDES, SIDES),
    BUDGETS,
    st.floats(0, 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["hired", "spatial", "random"]),
    st.sampled_from(["none", "rows"]),
    st.booleans(),
)
def test_kept_count_is_exact(
    size: tuple[int, int],
    budget: dict,
    alpha: float,
    seed: int,
    strategy: str,
    newline: str,
    anyres: bool,
) -> None:
    geometry = anyres_geometry(size) if anyres else single_geometry(size)
    init, final = separated(geometry, seed), separated(geometry, seed + 1)
    selection = select_tokens(
        geometry, strategy, init, final, alpha=alpha, newline=newline, seed=seed, **budget
    )
    want = expected_budget(size, anyres, budget)
    assert selection.num_kept == want == selection.budget
    assert int(selection.partition_budgets.sum()) == want
    assert [len(k) for k in selection.kept] == selection.partition_budgets.tolist()
    assert (selection.partition_budgets <= geometry.valid_counts()).all()
    assert_well_formed(selection, geometry)
    mode = "stock" if want == expected_budget(size, anyres, {"ratio": 1.0}) else newline
    np.testing.assert_array_equal(
        selection.order, expected_order(size, anyres, selection.kept, mode)
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=60),
    st.data(),
)
def test_top_indices_ties_and_supersets(scores: list[int], data: st.DataObject) -> None:
    allowed = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    )
    count = int(allowed.sum())
    k1 = data.draw(st.integers(0, count))
    k2 = data.draw(st.integers(k1, count))
    values = np.array(scores, dtype=np.float32)
    small, large = top_indices(values, k1, allowed), top_indices(values, k2, allowed)
    brute = sorted(np.flatnonzero(allowed), key=lambda i: (-scores[i], i))[:k2]
    assert large.tolist() == sorted(brute)
    assert np.all(np.diff(large) > 0) and allowed[large].all()
    assert set(small.tolist()) <= set(large.tolist())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, N), st.integers(1, N), st.integers(0, 2**32 - 1), st.booleans())
def test_larger_budget_keeps_a_superset_within_a_partition(
    t1: int, t2: int, seed: int, anyres: bool
) -> None:
    # Fixed split: LLaVA-1.5 has one partition; anyres with alpha = 1 and B <= N puts all of B
    # on the full image.
    small, large = sorted((t1, t2))
    geometry = anyres_geometry((500, 800)) if anyres else single_geometry((500, 800))
    init, final = separated(geometry, seed), separated(geometry, seed + 1)
    a = select_tokens(geometry, "hired", init, final, tokens=small, alpha=1.0)
    b = select_tokens(geometry, "hired", init, final, tokens=large, alpha=1.0)
    assert a.partition_budgets[0] == small and b.partition_budgets[0] == large
    assert set(a.kept[0].tolist()) <= set(b.kept[0].tolist())


def test_top_indices_exact() -> None:
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.7, 0.9], dtype=np.float32)
    assert top_indices(scores, 2).tolist() == [1, 2]  # three 0.9s: the two lowest indices
    assert top_indices(scores, 4).tolist() == [1, 2, 4, 5]
    mask = np.array([True, False, True, True, True, True])
    assert top_indices(scores, 3, mask).tolist() == [2, 4, 5]
    assert top_indices(scores, 0).tolist() == []
    unsigned = np.array([3, 200, 7, 200], dtype=np.uint8)  # must not wrap when negated
    assert top_indices(unsigned, 2).tolist() == [1, 3]
    with pytest.raises(BudgetError, match="expected"):
        top_indices(scores, 6, mask)


# --- exact hand-computed cases ----------------------------------------------------------------


def test_content_scores_2x2_grid() -> None:
    # 672 x 672 -> 2x2 grid, no padding: full-image patch (r, c) lies in sub-image
    # 1 + 2 * (r >= 12) + (c >= 12). alpha = 0.99 -> k = floor(0.01 * 576) = 5 highlighted,
    # exactly the five hot patches:
    #   (0, 0) -> 1, (5, 20) -> 2, (13, 3) -> 3, (23, 23) -> 4, (20, 15) -> 4  => S = [0,1,1,1,2].
    # tokens = 1000: B_full = min(floor(990), 576) = 576, B_sub = 424;
    # 424 * [1,1,1,2] / 5 = 84.8 84.8 84.8 169.6 -> 84 84 84 169 (+3 to the .8s) -> 85 85 85 169.
    geometry = anyres_geometry((672, 672))
    init = np.zeros((5, N), dtype=np.float32)
    init[0] = grid_scores(24, 24, [(0, 0), (5, 20), (13, 3), (23, 23), (20, 15)])
    selection = select_tokens(
        geometry, "hired", heads(init), separated(geometry, 0), tokens=1000, alpha=0.99
    )
    assert selection.content_scores.tolist() == [0, 1, 1, 1, 2]
    assert selection.partition_budgets.tolist() == [576, 85, 85, 85, 169]
    assert selection.num_kept == 1000


def test_content_scores_wide_1x2_grid() -> None:
    # 336 x 672 -> 1x2 grid: patch (r, c) lies in sub-image 1 if c < 12, else 2.
    # Hot: (0, 0) -> 1, (0, 20) -> 2, (10, 13) -> 2, (23, 2) -> 1, (23, 23) -> 2 => S = [0, 2, 3].
    # tokens = 1000, alpha = 0.99: B_full = 576, B_sub = 424; 424 * 2/5 = 169.6, 424 * 3/5 =
    # 254.4 -> 169 254 (+1 to .6) -> [170, 254].
    geometry = anyres_geometry((336, 672))
    init = np.zeros((3, N), dtype=np.float32)
    init[0] = grid_scores(24, 24, [(0, 0), (0, 20), (10, 13), (23, 2), (23, 23)])
    selection = select_tokens(
        geometry, "hired", heads(init), separated(geometry, 1), tokens=1000, alpha=0.99
    )
    assert selection.content_scores.tolist() == [0, 2, 3]
    assert selection.partition_budgets.tolist() == [576, 170, 254]


def tiny_geometry() -> ImageGeometry:
    """2x2 grid of 2x2-token partitions: N = 4, P = 5, all valid."""
    return anyres_geometry((56, 56), pinpoints=((56, 56),), crop_size=28, patch_size=14)


def test_exact_kept_indices_small_case() -> None:
    # tokens = 9, alpha = 0.5: B_full = floor(4.5) = 4 (all of the full image), B_sub = 5.
    # k = floor(0.5 * 4) = 2 highlighted: full-image tokens 1 (0.9) and 3 (0.8), which lie in
    # sub-images 2 and 4 => S = [0, 0, 1, 0, 1]; 5 over [0, 1, 0, 1]: 2.5 / 2.5, the tie goes
    # to the lower index => budgets [4, 0, 3, 0, 2].
    # Sub-image 2: top 3 of [0.5, 0.1, 0.9, 0.7] = 2, 3, 0. Sub-image 4: [0.3, 0.3, 0.1, 0.2]
    # -> the tied 0.3s, lower index first: 0, 1.
    geometry = tiny_geometry()
    init = np.zeros((5, 4), dtype=np.float32)
    init[0] = [0.1, 0.9, 0.2, 0.8]
    final = np.zeros((5, 4), dtype=np.float32)
    final[0] = [0.4, 0.3, 0.2, 0.1]
    final[2] = [0.5, 0.1, 0.9, 0.7]
    final[4] = [0.3, 0.3, 0.1, 0.2]
    selection = select_tokens(
        geometry, "hired", heads(init), heads(final), tokens=9, newline="rows"
    )
    assert selection.content_scores.tolist() == [0, 0, 1, 0, 1]
    assert selection.partition_budgets.tolist() == [4, 0, 3, 0, 2]
    assert [k.tolist() for k in selection.kept] == [[0, 1, 2, 3], [], [0, 2, 3], [], [0, 1]]
    # Stitched 4x4 grid, row by row: row 0 = sub 1 tokens 0,1 | sub 2 tokens 0,1 -> (2,0);
    # row 1 -> (2,2), (2,3); row 2 = sub 3 tokens 0,1 | sub 4 tokens 0,1 -> (4,0), (4,1);
    # row 3 keeps nothing, so no newline after it.
    nl = [NEWLINE, NEWLINE]
    assert selection.order.tolist() == [
        [0, 0], [0, 1], [0, 2], [0, 3],
        [2, 0], nl, [2, 2], [2, 3], nl, [4, 0], [4, 1], nl,
    ]  # fmt: skip
    plain = select_tokens(geometry, "hired", heads(init), heads(final), tokens=9)
    assert NEWLINE not in plain.order
    assert plain.order.tolist() == [r for r in selection.order.tolist() if r != nl]


def test_llava15_keeps_top_b_of_feature_importance() -> None:
    geometry = single_geometry((480, 640))
    final = np.zeros((1, N), dtype=np.float32)
    final[0, [7, 100, 300, 575]] = [4.0, 3.0, 2.0, 2.0]
    for alpha in (0.0, 0.5, 1.0):
        selection = select_tokens(
            geometry, "hired", heads(final), heads(final), tokens=3, alpha=alpha
        )
        assert selection.kept[0].tolist() == [7, 100, 300]  # 2.0 tie -> lower index 300
        assert selection.content_scores.tolist() == [0]
        assert selection.order.tolist() == [[0, 7], [0, 100], [0, 300]]


# --- no dropping = the stock model ------------------------------------------------------------

STOCK_SIZES = [
    ((672, 672), (2, 2)),
    ((500, 500), (2, 2)),
    ((336, 672), (1, 2)),
    ((672, 336), (2, 1)),
    ((336, 1008), (1, 3)),
    ((1008, 336), (3, 1)),
    ((200, 300), (1, 2)),
    ((400, 1000), (1, 3)),
    ((1000, 400), (3, 1)),
    ((1, 4000), (1, 2)),
    ((4000, 1), (1, 2)),
]


@pytest.mark.parametrize(("size", "grid"), STOCK_SIZES)
def test_no_dropping_is_the_stock_order(size: tuple[int, int], grid: tuple[int, int]) -> None:
    geometry = anyres_geometry(size)
    assert geometry.grid == grid
    stock = geometry.packing_order(all_valid(geometry), "stock")
    rows, cols = len(geometry.rows_kept), len(geometry.cols_kept)
    assert len(stock) == N + rows * (cols + 1)
    init, final = separated(geometry, 3), separated(geometry, 4)
    for strategy, kwargs in [
        ("full", {}),
        ("full", {"tokens": 10}),
        ("hired", {}),
        ("hired", {"ratio": 1.0, "newline": "rows"}),
        ("hired", {"tokens": 100_000, "alpha": 0.0}),
        ("spatial", {"ratio": 1.0}),
        ("random", {"ratio": 1.0}),
    ]:
        selection = select_tokens(geometry, strategy, init, final, **kwargs)
        np.testing.assert_array_equal(selection.order, stock)
        assert not selection.dropped_any
        assert selection.num_kept == selection.num_valid == int(geometry.valid_counts().sum())


def test_full_on_llava15_is_every_token_without_newlines() -> None:
    geometry = single_geometry((100, 900))
    selection = select_tokens(geometry, "full", None, None)
    assert selection.order.tolist() == [[0, t] for t in range(N)]
    assert selection.budget == N and selection.content_scores is None


def hf_pack_order(geometry: ImageGeometry) -> np.ndarray:
    """transformers' own pack_image_features on features that encode (partition, token)."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.llava_next.modeling_llava_next")
    config = types.SimpleNamespace(
        vision_config=types.SimpleNamespace(image_size=336, patch_size=14),
        image_grid_pinpoints=[list(p) for p in LLAVA_V16_PINPOINTS],
    )
    parts = geometry.num_partitions
    features = torch.arange(parts * N, dtype=torch.float64).reshape(parts, N, 1)
    packed, _ = modeling.LlavaNextModel.pack_image_features(
        types.SimpleNamespace(config=config),
        [features],
        torch.tensor([geometry.image_size]),
        "default",
        torch.tensor([-1.0], dtype=torch.float64),
    )
    return packed[0][:, 0].numpy().astype(np.int64)


@pytest.mark.parametrize(("size", "grid"), STOCK_SIZES[:9])
def test_full_matches_transformers_pack_image_features(
    size: tuple[int, int], grid: tuple[int, int]
) -> None:
    geometry = anyres_geometry(size)
    order = select_tokens(geometry, "full", None, None).order
    encoded = np.where(order[:, 0] == NEWLINE, -1, order[:, 0] * N + order[:, 1])
    np.testing.assert_array_equal(encoded, hf_pack_order(geometry))


# --- hired-ref --------------------------------------------------------------------------------


def left_half_hot(parts: int) -> np.ndarray:
    """s_init whose full-image top 288 (= int(576 * 0.5)) are exactly columns 0..11."""
    init = np.zeros((parts, N), dtype=np.float32)
    init[0] = grid_scores(24, 24, [(r, c) for r in range(24) for c in range(12)])
    return heads(init)


def test_hired_ref_floors_and_loses_the_remainder() -> None:
    # 336 x 672, 1x2, all valid. tokens = 101, alpha = 0.5: B_full = floor(50.5) = 50,
    # B_sub = 51. The 288 highlighted tokens are the left half; in contiguous raster chunks
    # (rows 0-11 | rows 12-23) that is 144 | 144, so each sub gets fp32 floor(0.5 * 51) = 25:
    # 50 + 25 + 25 = 100, one token lost. hired keeps 101.
    geometry = anyres_geometry((336, 672))
    init, final = left_half_hot(3), separated(geometry, 5)
    ref = select_tokens(geometry, "hired-ref", init, final, tokens=101)
    assert ref.content_scores.tolist() == [0, 144, 144]
    assert ref.partition_budgets.tolist() == [50, 25, 25]
    assert ref.num_kept == 100 and ref.budget == 101
    assert select_tokens(geometry, "hired", init, final, tokens=101).num_kept == 101


def test_hired_ref_chunks_differ_from_regions_on_a_wide_image() -> None:
    # Same map, tokens = 600: B_full = 300, B_sub = 300. Region mapping (hired): the left half
    # is sub-image 1 -> S = [0, 288, 0] -> [300, 300, 0]. Contiguous chunks (hired-ref):
    # 144 | 144 -> floor(0.5 * 300) = 150 each -> [300, 150, 150].
    geometry = anyres_geometry((336, 672))
    init, final = left_half_hot(3), separated(geometry, 6)
    hired = select_tokens(geometry, "hired", init, final, tokens=600)
    ref = select_tokens(geometry, "hired-ref", init, final, tokens=600)
    assert hired.content_scores.tolist() == [0, 288, 0]
    assert hired.partition_budgets.tolist() == [300, 300, 0]
    assert ref.partition_budgets.tolist() == [300, 150, 150]


def test_hired_ref_loses_tokens_in_padding() -> None:
    # 200 x 300 -> 1x2 grid of a 24 x 48 stitched map whose columns 6..41 survive unpadding:
    # sub-image 1 keeps local columns 6..23, sub-image 2 local columns 0..17.
    # tokens = 100, alpha = 0.5: B_full = 50, B_sub = 50, chunks 144 | 144 -> 25 + 25.
    # Importance falls with the column: I[p, r*24 + c] = (24 - c) * 100 + (24 - r), so each
    # sub's top 25 are column 0 (24 tokens) and (0, 1): all padding in sub-image 1, all valid
    # in sub-image 2. hired-ref keeps 50 + 0 + 25 = 75 of its 100.
    geometry = anyres_geometry((200, 300))
    assert (geometry.cols_kept.start, geometry.cols_kept.stop) == (6, 42)
    r, c = np.divmod(np.arange(N), 24)
    final = np.tile(((24 - c) * 100 + (24 - r)).astype(np.float32), (3, 1))
    init = left_half_hot(3)
    ref = select_tokens(geometry, "hired-ref", init, heads(final), tokens=100, newline="rows")
    assert ref.partition_budgets.tolist() == [50, 25, 25]
    assert [len(k) for k in ref.kept] == [50, 0, 25]
    assert ref.num_kept == 75 and ref.dropped_any
    assert NEWLINE not in ref.order  # hired-ref never inserts newlines
    # hired maps the left half to sub-image 1 (the resized image sits centred, 84 px of padding
    # each side: x = (c + 0.5) * 21 + 84 < 336 <=> c <= 11) and keeps its 50 best *valid*
    # tokens: local columns 6 and 7 (48) and the two best of column 8 (rows 0 and 1).
    hired = select_tokens(geometry, "hired", init, heads(final), tokens=100)
    assert hired.partition_budgets.tolist() == [50, 50, 0]
    expected = sorted([r * 24 + 6 for r in range(24)] + [r * 24 + 7 for r in range(24)] + [8, 32])
    assert hired.kept[1].tolist() == expected
    assert hired.num_kept == 100


# --- spatial and random -----------------------------------------------------------------------


def test_spatial_is_an_even_stride_over_valid_tokens() -> None:
    geometry = single_geometry((336, 336))
    init = heads(np.zeros((1, N)))
    selection = select_tokens(geometry, "spatial", init, init, tokens=4)
    assert selection.kept[0].tolist() == [72, 216, 360, 504]  # floor((i + 0.5) * 576 / 4)
    assert selection.content_scores is None
    padded = anyres_geometry((200, 300))
    chosen = select_tokens(padded, "spatial", left_half_hot(3), left_half_hot(3), tokens=300)
    assert chosen.num_kept == 300
    assert_well_formed(chosen, padded)


def test_random_is_seeded() -> None:
    geometry = anyres_geometry((672, 672))
    init, final = separated(geometry, 0), separated(geometry, 1)
    a = select_tokens(geometry, "random", init, final, tokens=500, seed=7)
    b = select_tokens(geometry, "random", init, final, tokens=500, seed=7)
    c = select_tokens(geometry, "random", init, final, tokens=500, seed=8)
    assert a.num_kept == c.num_kept == 500
    assert all(np.array_equal(x, y) for x, y in zip(a.kept, b.kept, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.kept, c.kept, strict=True))
    assert a.partition_budgets.tolist() == c.partition_budgets.tolist()  # hired's split


# --- bad arguments ----------------------------------------------------------------------------

SQUARE = anyres_geometry((672, 672))
GOOD = separated(SQUARE, 0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tokens": 0}, BudgetError),
        ({"tokens": -5}, BudgetError),
        ({"tokens": 2.5}, BudgetError),
        ({"cap": 0}, BudgetError),
        ({"ratio": float("nan")}, BudgetError),
        ({"ratio": 1.01}, BudgetError),
        ({"ratio": 0.0}, BudgetError),
        ({"alpha": -0.1}, BudgetError),
        ({"alpha": 1.5}, BudgetError),
        ({"alpha": float("nan")}, BudgetError),
        ({"alpha": True}, BudgetError),
        ({"newline": "stock"}, InvalidArgumentError),
        ({"newline": None}, InvalidArgumentError),
        ({"seed": -1}, InvalidArgumentError),
        ({"seed": 1.5}, InvalidArgumentError),
    ],
)
def test_bad_arguments_raise_typed_errors(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="expected"):
        select_tokens(SQUARE, "hired", GOOD, GOOD, **kwargs)


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError, match="expected") as info:
        select_tokens(SQUARE, "fastv", GOOD, GOOD)
    assert all(name in str(info.value) for name in STRATEGIES)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16, N)),
        np.zeros((5, 16, 575)),
        np.zeros((5, N)),
        np.zeros((5, 0, N)),
        np.zeros((1, 5, 16, N)),
    ],
)
def test_attention_of_the_wrong_shape(bad: np.ndarray) -> None:
    with pytest.raises(AttentionShapeError, match=r"expected \[P, heads, N\] = \[5, \*, 576\]"):
        select_tokens(SQUARE, "hired", bad, GOOD)
    with pytest.raises(AttentionShapeError, match="expected"):
        select_tokens(SQUARE, "hired", GOOD, bad)


def test_attention_shape_message_names_the_shape() -> None:
    with pytest.raises(AttentionShapeError) as info:
        select_tokens(SQUARE, "hired", np.zeros((2, 16, N)), GOOD)
    assert str(info.value) == "cls_init: expected [P, heads, N] = [5, *, 576], got (2, 16, 576)"


def test_attention_must_be_finite_with_matching_heads() -> None:
    for value in (np.nan, np.inf):
        bad = GOOD.copy()
        bad[1, 0, 3] = value
        with pytest.raises(AttentionShapeError, match="expected"):
            select_tokens(SQUARE, "hired", GOOD, bad)
    with pytest.raises(AttentionShapeError, match="expected"):
        select_tokens(SQUARE, "hired", np.zeros((5, 16, N)), np.zeros((5, 12, N)))
    with pytest.raises(AttentionShapeError, match="expected"):
        select_tokens(SQUARE, "hired", None, GOOD)


def test_float16_and_float64_attention_are_accepted() -> None:
    for dtype in (np.float16, np.float64):
        selection = select_tokens(SQUARE, "hired", GOOD.astype(dtype), GOOD.astype(dtype), tokens=7)
        assert selection.num_kept == 7
