"""The selection picture, checked from its own pixels on synthetic geometries (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge_hired.errors import InvalidArgumentError
from edge_hired.hired import Selection, select_tokens
from edge_hired.hired.geometry import ImageGeometry, anyres_geometry, single_geometry
from edge_hired.visualize import (
    MARKER,
    ShowReport,
    partition_views,
    selection_figure,
    views_from_pixels,
)
from tests.helpers import (
    cell_pixels,
    highlighted_from_pixels,
    marker_mask,
    read_png,
    ring_size,
)

WIDE = (350, 800)  # (height, width): grid 1x3; sub-images 1 and 3 lose columns to unpadding


# ------------------------------------------------------------ fixtures


def picture(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], -1)
    return Image.fromarray(((base + rng.integers(0, 60, base.shape)) % 256).astype(np.uint8))


def hand_selection(geometry: ImageGeometry, per_part: list[int], strategy: str = "spatial"):
    """Keep the first `per_part[p]` valid tokens of every third valid one (a visible pattern)."""
    kept = []
    for row, count in zip(geometry.valid_mask(), per_part, strict=True):
        candidates = np.flatnonzero(row)[::3]
        kept.append(np.sort(candidates[:count]).astype(np.int64))
    budgets = np.array(per_part, dtype=np.int64)
    return Selection(
        strategy=strategy,
        budget=int(budgets.sum()),
        partition_budgets=budgets,
        kept=tuple(kept),
        order=np.zeros((0, 2), dtype=np.int64),
        content_scores=None,
        merge=None,
        num_valid=int(geometry.valid_counts().sum()),
    )


def heat(geometry: ImageGeometry, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((geometry.num_partitions, geometry.tokens_per_partition)).astype(np.float32)


@pytest.fixture
def wide(tmp_path) -> tuple[ImageGeometry, Selection, ShowReport, np.ndarray]:
    geometry = anyres_geometry(WIDE)
    selection = hand_selection(geometry, [100, 37, 5, 0])
    report = selection_figure(
        picture(*WIDE), geometry, selection, heat(geometry), tmp_path / "wide.png"
    )
    return geometry, selection, report, read_png(tmp_path / "wide.png")


# ------------------------------------------------------------ tests


def test_cell_boxes_tile_every_panel_without_overlap(wide) -> None:
    geometry, _, report, pixels = wide
    n, c = geometry.n_side, report.cell_px
    assert report.size == (pixels.shape[1], pixels.shape[0])
    covered = np.zeros(pixels.shape[:2], dtype=np.int32)
    for boxes in report.cell_boxes:
        assert boxes.shape == (n * n, 4)
        assert ((boxes[:, 2] - boxes[:, 0]) == c).all() and ((boxes[:, 3] - boxes[:, 1]) == c).all()
        assert (boxes[1:n, 0] - boxes[: n - 1, 0] == c).all()  # row 0 runs left to right
        assert (boxes[n, 1] - boxes[0, 1]) == c  # token n starts the second row
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] += 1
    hx0, hy0, hx1, hy1 = report.heat_box
    covered[hy0:hy1, hx0:hx1] += 1
    assert covered.max() == 1
    assert covered.sum() == (geometry.num_partitions + 1) * (n * c) ** 2


def test_highlighted_cells_counted_from_pixels_equal_kept(wide) -> None:
    _, selection, report, pixels = wide
    found = highlighted_from_pixels(pixels, list(report.cell_boxes), report.cell_px, 2)
    assert found == [list(k) for k in selection.kept]
    assert [list(h) for h in report.highlighted] == found
    total_marker = int(marker_mask(pixels).sum())  # no marker pixel outside the rings
    assert total_marker == selection.num_kept * ring_size(report.cell_px, report.outline_px)


def test_dropped_cells_are_grey_and_kept_cells_keep_colour(wide) -> None:
    geometry, selection, report, pixels = wide
    valid = geometry.valid_mask()
    for part, boxes in enumerate(report.cell_boxes):
        kept = set(selection.kept[part].tolist())
        for t in np.flatnonzero(valid[part]):
            inside = cell_pixels(pixels, boxes[t], report.outline_px).astype(int)
            is_grey = (inside[:, 0] == inside[:, 1]).all() and (inside[:, 1] == inside[:, 2]).all()
            assert is_grey == (t not in kept), (part, t)


def test_invalid_cells_are_hatched_distinctly(wide) -> None:
    geometry, _, report, pixels = wide
    invalid = ~geometry.valid_mask()
    assert invalid[1:].any() and not invalid[0].any()
    assert [list(i) for i in report.invalid] == [list(np.flatnonzero(r)) for r in invalid]
    for part, boxes in enumerate(report.cell_boxes):
        for t in np.flatnonzero(invalid[part]):
            inside = cell_pixels(pixels, boxes[t], 1).astype(int)
            colours = {tuple(p) for p in inside}
            assert len(colours) == 2, (part, t, colours)  # base and hatch stripes
            assert all(b > r + 20 for r, _, b in colours)  # bluish: neither grey nor the image
            assert not marker_mask(
                pixels[boxes[t][1] : boxes[t][3], boxes[t][0] : boxes[t][2]]
            ).any()


def test_marker_coloured_image_does_not_fake_highlights(tmp_path) -> None:
    geometry = anyres_geometry((500, 500))
    magenta = Image.new("RGB", (500, 500), MARKER)
    selection = hand_selection(geometry, [10, 0, 3, 0, 7])
    report = selection_figure(magenta, geometry, selection, heat(geometry), tmp_path / "m.png")
    pixels = read_png(tmp_path / "m.png")
    assert int(marker_mask(pixels).sum()) == 20 * ring_size(report.cell_px, report.outline_px)
    found = highlighted_from_pixels(pixels, list(report.cell_boxes), report.cell_px, 2)
    assert [len(f) for f in found] == [10, 0, 3, 0, 7]


def test_single_partition_and_real_hired_selection(tmp_path) -> None:
    geometry = single_geometry((300, 500))
    scores = heat(geometry)[:, None, :]
    selection = select_tokens(geometry, "hired", scores, scores, tokens=77)
    report = selection_figure(
        picture(300, 500), geometry, selection, scores[:, 0], tmp_path / "one.png", cell_px=8
    )
    pixels = read_png(tmp_path / "one.png")
    found = highlighted_from_pixels(pixels, list(report.cell_boxes), 8, 2)
    assert [len(f) for f in found] == [77] and report.num_highlighted == 77
    assert report.to_dict()["panels"] == [[int(v) for v in report.cell_boxes[0][0, :2]]]


def test_hired_content_scores_are_shown_and_checked_against_alpha(tmp_path) -> None:
    geometry = anyres_geometry((500, 500))
    rows = heat(geometry)[:, None, :]
    selection = select_tokens(geometry, "hired", rows, rows, ratio=0.2, alpha=0.5)
    report = selection_figure(
        picture(500, 500), geometry, selection, rows[:, 0], tmp_path / "h.png"
    )
    assert report.content_scores == tuple(int(s) for s in selection.content_scores)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        selection_figure(
            picture(500, 500), geometry, selection, rows[:, 0], tmp_path / "x.png", alpha=0.9
        )


def test_bad_inputs_raise_one_line_errors(tmp_path) -> None:
    geometry = anyres_geometry(WIDE)
    selection = hand_selection(geometry, [5, 5, 5, 5])
    image, rows = picture(*WIDE), heat(geometry)
    cases = [
        dict(selection=hand_selection(single_geometry(WIDE), [5])),
        dict(cls_init_summed=rows[:, :10]),
        dict(out_path=tmp_path / "missing" / "x.png"),
        dict(cell_px=3),
        dict(views=[image]),
    ]
    for case in cases:
        args = dict(
            image=image,
            geometry=geometry,
            selection=selection,
            cls_init_summed=rows,
            out_path=tmp_path / "x.png",
        )
        views = case.pop("views", None)
        cell_px = case.pop("cell_px", 16)
        args.update(case)
        with pytest.raises(InvalidArgumentError) as error:
            selection_figure(**args, views=views, cell_px=cell_px)
        assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_is_atomic_and_replaces(tmp_path) -> None:
    geometry = single_geometry((64, 64))
    selection = hand_selection(geometry, [3])
    out = tmp_path / "pic.png"
    out.write_bytes(b"old")
    selection_figure(picture(64, 64), geometry, selection, heat(geometry)[0], out)
    assert [p.name for p in tmp_path.iterdir()] == ["pic.png"]
    assert read_png(out).shape[2] == 3


def test_partition_views_match_the_processor_layout() -> None:
    geometry = anyres_geometry(WIDE)  # 800x350 -> 768x336 centred in 1008x336: 120 px padding
    views = partition_views(picture(*WIDE), geometry)
    assert len(views) == geometry.num_partitions
    assert all(v.size == (336, 336) for v in views)
    left, middle, right = (np.asarray(v) for v in views[1:])
    assert left[:, :118].max() == 0 and left[:, 122:].max() > 0
    assert right[:, -118:].max() == 0 and middle.max() > 0
    assert (~geometry.valid_mask()[1]).reshape(24, 24)[:, :8].all()  # those columns are invalid


def test_views_from_pixels_inverts_normalisation() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 3, 8, 8)).astype(np.float32)
    mean, std = (0.48, 0.45, 0.40), (0.26, 0.26, 0.27)
    m, s = np.array(mean).reshape(1, 3, 1, 1), np.array(std).reshape(1, 3, 1, 1)
    normalised = (rgb / 255 - m) / s
    views = views_from_pixels(normalised, mean, std)
    back = np.stack([np.asarray(v).transpose(2, 0, 1) for v in views])
    assert np.array_equal(back, rgb.astype(np.uint8))
    with pytest.raises(InvalidArgumentError):
        views_from_pixels(rgb[0], mean, std)
