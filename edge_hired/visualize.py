"""Picture of one token selection: what HiRED kept, what it dropped, and why.

`selection_figure` draws, with PIL alone (no GUI, no matplotlib), one panel per partition showing
the pixels the encoder saw with the partition's token grid on top: kept tokens in their own
colours inside a pure magenta (255, 0, 255) outline, dropped valid tokens greyed, tokens the model
removes by unpadding hatched. A further panel shows the layer-0 CLS attention of the full image
(sum over heads) with the sub-image regions its highlighted patches were counted in, and each
region's content score S[p]. Titles carry each partition's budget B_p and kept count.

The magenta outline colour appears nowhere else in the PNG (image pixels of that exact colour are
nudged by one level), so the kept count can be read back from the pixels: `ShowReport` records
every cell's pixel box and which cells are highlighted. `show` is the one call behind
`edge-hired show`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import Selection
from edge_hired.hired.geometry import ImageGeometry, resized_size
from edge_hired.hired.strategies import highlight_count, top_indices
from edge_hired.hired.tiles import TileGeometry

if TYPE_CHECKING:
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

__all__ = [
    "MARKER",
    "ShowReport",
    "partition_views",
    "selection_figure",
    "show",
    "views_from_pixels",
]

MARKER = (255, 0, 255)
"""Outline colour of kept cells; no other pixel of the picture has it."""
NEAR_MARKER = (254, 0, 255)  # what image pixels of the marker colour become
GRID = (96, 96, 96)
INVALID_BASE = (34, 36, 58)
INVALID_HATCH = (112, 116, 168)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
REGION_LINE = (255, 255, 255)
DEFAULT_CELL_PX = 16
OUTLINE_PX = 2
MIN_CELL_PX, MAX_CELL_PX = 2 * OUTLINE_PX + 2, 64
MARGIN, GAP, TITLE_H, HEADER_H = 16, 18, 38, 76
HATCH_PERIOD = 7
DROPPED, INVALID, KEPT = 1, 0, 2
# Viridis-like anchors for the heat map (none is near magenta).
HEAT_ANCHORS = np.array(
    [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float32
)


@dataclass(frozen=True, eq=False)
class ShowReport:
    """What the picture shows and where: enough to verify the PNG from its pixels."""

    path: Path
    size: tuple[int, int]  # (width, height) of the PNG
    strategy: str
    cell_px: int
    outline_px: int
    marker: tuple[int, int, int]
    cell_boxes: tuple[np.ndarray, ...]  # per partition [N, 4] (x0, y0, x1, y1), x1/y1 exclusive
    highlighted: tuple[tuple[int, ...], ...]  # per partition: cell indices drawn as kept
    invalid: tuple[tuple[int, ...], ...]  # per partition: cells removed by unpadding
    partition_budgets: tuple[int, ...]
    content_scores: tuple[int, ...] | None  # S[p] shown on the heat map (None: not used)
    heat_box: tuple[int, int, int, int]

    @property
    def num_highlighted(self) -> int:
        """Highlighted cells over all partitions (equals the kept token count)."""
        return sum(len(cells) for cells in self.highlighted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; `panels` holds each partition's top-left pixel (cell 0's box)."""
        return {
            "out": str(self.path),
            "size": list(self.size),
            "strategy": self.strategy,
            "visual_tokens_kept": self.num_highlighted,
            "kept_per_partition": [len(cells) for cells in self.highlighted],
            "invalid_per_partition": [len(cells) for cells in self.invalid],
            "partition_budgets": list(self.partition_budgets),
            "content_scores": None if self.content_scores is None else list(self.content_scores),
            "cell_px": self.cell_px,
            "outline_px": self.outline_px,
            "marker": list(self.marker),
            "panels": [[int(v) for v in boxes[0, :2]] for boxes in self.cell_boxes],
            "heat_box": list(self.heat_box),
        }

    def to_json(self) -> str:
        """One JSON object on one line."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class _Layout:
    """Pixel origins of every panel on the canvas."""

    n: int  # cells per panel side
    cell_px: int
    origins: tuple[tuple[int, int], ...]  # per partition (x, y) of the panel's top-left
    heat: tuple[int, int]
    size: tuple[int, int]

    @property
    def side(self) -> int:
        """Panel side in pixels."""
        return self.n * self.cell_px


@dataclass(frozen=True)
class _Counted:
    """Which full-image patches were counted into which sub-image's content score."""

    region: np.ndarray  # [N] sub-image 1..m each full-image patch is counted in
    hot: np.ndarray  # highlighted (top-k layer-0) patch indices
    scores: np.ndarray  # [P] S[p]


@dataclass(frozen=True)
class _Scene:
    """Everything one picture is drawn from."""

    image: Image.Image
    geometry: ImageGeometry
    selection: Selection
    states: np.ndarray  # [P, N] KEPT / DROPPED / INVALID
    counted: _Counted | None  # None: no sub-images
    layout: _Layout


# ---------------------------------------------------------------- partition pixels


def partition_views(image: Image.Image, geometry: ImageGeometry) -> list[Image.Image]:
    """The P partitions as the image processor cuts them, rebuilt from the original image.

    Anyres: the full image squashed to crop x crop, then the crops of the best-resolution canvas
    holding the aspect-preserving resize centred on black padding. One partition (LLaVA-1.5):
    shortest edge resized to the crop size, then a centre crop.
    """
    rgb, crop = image.convert("RGB"), geometry.crop_size
    if not geometry.num_sub_images:
        return [_centre_crop(rgb, crop)]
    canvas_h, canvas_w = geometry.best_resolution
    new_h, new_w = resized_size(geometry.image_size, geometry.best_resolution)
    canvas = Image.new("RGB", (canvas_w, canvas_h), (0, 0, 0))
    offset = ((canvas_w - new_w) // 2, (canvas_h - new_h) // 2)
    canvas.paste(rgb.resize((new_w, new_h), Image.Resampling.BICUBIC), offset)
    crops = [
        canvas.crop((c * crop, r * crop, (c + 1) * crop, (r + 1) * crop))
        for r in range(geometry.grid[0])
        for c in range(geometry.grid[1])
    ]
    return [rgb.resize((crop, crop), Image.Resampling.BICUBIC), *crops]


def _centre_crop(rgb: Image.Image, crop: int) -> Image.Image:
    """CLIP preprocessing: shortest edge to `crop` (aspect kept), then the central square."""
    scale = crop / min(rgb.size)
    size = (max(crop, int(rgb.width * scale)), max(crop, int(rgb.height * scale)))
    resized = rgb.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    return resized.crop((left, top, left + crop, top + crop))


def views_from_pixels(
    pixel_values: Any, mean: Any, std: Any, rescale: float = 1 / 255
) -> list[Image.Image]:
    """De-normalise the processor's pixel values [P, 3, H, W] back into P RGB images."""
    pixels = np.asarray(pixel_values, dtype=np.float32)
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise InvalidArgumentError(expected("pixel_values", "[P, 3, H, W]", pixels.shape))
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    values = np.clip(np.rint((pixels * std + mean) / rescale), 0, 255).astype(np.uint8)
    return [Image.fromarray(np.ascontiguousarray(v.transpose(1, 2, 0))) for v in values]


# ---------------------------------------------------------------- the figure


def selection_figure(
    image: Image.Image,
    geometry: ImageGeometry,
    selection: Selection,
    cls_init_summed: Any,
    out_path: str | Path,
    *,
    views: list[Image.Image] | None = None,
    alpha: float = 0.5,
    cell_px: int = DEFAULT_CELL_PX,
    signal: str = "cls",
) -> ShowReport:
    """Draw `selection` over the image's partitions and write it to `out_path` as a PNG.

    `signal` names the heat map: "cls" (CLS attention) or "received" (attention received).
    On a OneVision grid shrunk by its bilinear resize, each kept cell is the anchor token of a
    shrunk position; tokens that anchor none are drawn as removed (the LLM never sees them).

    `cls_init_summed`: layer-0 CLS attention summed over heads, [P, N] or the full image's [N].
    `views`: the P partition images the encoder saw (e.g. `views_from_pixels`); rebuilt from
    `image` with `partition_views` when omitted. `alpha` must be the selection's (it fixes the
    highlighted patches counted into S[p]). The PNG is written atomically (temp file + rename).
    """
    heat = _check_inputs(geometry, selection, cls_init_summed, views, cell_px)
    views = views if views is not None else partition_views(image, geometry)
    counted = _counted_patches(geometry, selection, heat, alpha)
    states = _cell_states(geometry, selection)
    scene = _Scene(image, geometry, selection, states, counted, _layout(geometry, cell_px))
    layout = scene.layout
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    for part, origin in enumerate(layout.origins):
        canvas.paste(_partition_panel(views[part], states[part], layout), origin)
    canvas.paste(_heat_panel(views[0], heat, layout), layout.heat)
    draw = ImageDraw.Draw(canvas)
    _draw_regions(draw, scene)
    _draw_texts(draw, scene, SIGNAL_TITLES.get(signal, signal))
    pixels = _paint_outlines(_without_marker(canvas), scene)
    return _report(_save_atomic(Image.fromarray(pixels), Path(out_path)), scene)


def _check_inputs(
    geometry: ImageGeometry, selection: Selection, heat: Any, views: Any, cell_px: int
) -> np.ndarray:
    """Validate shapes; return the full image's layer-0 scores [N] as float32."""
    p, n = geometry.num_partitions, geometry.tokens_per_partition
    if len(selection.kept) != p:
        raise InvalidArgumentError(expected("selection partitions", p, len(selection.kept)))
    for part, kept in enumerate(selection.kept):
        if len(kept) and (np.min(kept) < 0 or np.max(kept) >= n):
            raise InvalidArgumentError(expected(f"kept[{part}]", f"indices in 0..{n - 1}", kept))
    scores = np.asarray(heat, dtype=np.float32)
    if scores.shape not in ((p, n), (n,)) or not np.isfinite(scores).all():
        raise InvalidArgumentError(
            expected("cls_init_summed", f"finite [{p}, {n}] or [{n}]", scores.shape)
        )
    if views is not None and len(views) != p:
        raise InvalidArgumentError(expected("views", f"{p} partition images", len(views)))
    if not isinstance(cell_px, int) or not MIN_CELL_PX <= cell_px <= MAX_CELL_PX:
        raise InvalidArgumentError(
            expected("cell_px", f"an integer in {MIN_CELL_PX}..{MAX_CELL_PX}", cell_px)
        )
    return scores if scores.ndim == 1 else scores[0]


def _layout(geometry: ImageGeometry, cell_px: int) -> _Layout:
    """Full image and heat map side by side; the sub-images below in their grid."""
    side, (rows, cols) = geometry.n_side * cell_px, geometry.grid
    step, top = side + GAP, MARGIN + HEADER_H + TITLE_H
    sub_top = top + side + GAP + TITLE_H
    subs = [
        (MARGIN + c * step, sub_top + r * (step + TITLE_H))
        for r in range(rows)
        for c in range(cols)
    ]
    width = 2 * MARGIN + max(2, cols) * step - GAP
    bottom = subs[-1][1] + side if subs else top + side
    origins = ((MARGIN, top), *subs)
    return _Layout(
        geometry.n_side, cell_px, origins, (MARGIN + step, top), (width, bottom + MARGIN)
    )


def _cell_states(geometry: ImageGeometry, selection: Selection) -> np.ndarray:
    """[P, N]: KEPT, DROPPED (valid, not kept) or INVALID (removed by unpadding)."""
    states = np.where(geometry.valid_mask(), DROPPED, INVALID).astype(np.uint8)
    for part, kept in enumerate(selection.kept):
        states[part, np.asarray(kept, dtype=np.int64)] = KEPT
    return states


def _cell_map(values: np.ndarray, layout: _Layout) -> np.ndarray:
    """Per-cell values [N] blown up to a per-pixel [side, side] array."""
    block = np.ones((layout.cell_px, layout.cell_px), dtype=values.dtype)
    return np.kron(values.reshape(layout.n, layout.n), block)


def _partition_panel(view: Image.Image, states: np.ndarray, layout: _Layout) -> Image.Image:
    """The partition's pixels: kept cells in colour, dropped ones grey, invalid ones hatched."""
    side = layout.side
    rgb = np.asarray(view.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    pixels, state = rgb.astype(np.float32), _cell_map(states, layout)
    luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = np.rint(0.3 * luma + 0.7 * 178)[..., None].repeat(3, axis=2)
    pixels = np.where((state == DROPPED)[..., None], grey, pixels)
    y, x = np.mgrid[0:side, 0:side]
    hatch = np.where(((x + y) % HATCH_PERIOD < 2)[..., None], INVALID_HATCH, INVALID_BASE)
    pixels = np.where((state == INVALID)[..., None], hatch, pixels)
    pixels[(y % layout.cell_px == 0) | (x % layout.cell_px == 0)] = GRID
    return Image.fromarray(pixels.astype(np.uint8))


def _heat_panel(view: Image.Image, scores: np.ndarray, layout: _Layout) -> Image.Image:
    """Layer-0 CLS attention per patch as colour, over a faint grey copy of the full image."""
    span = float(scores.max() - scores.min())
    level = (scores - scores.min()) / span if span > 0 else np.full_like(scores, 0.5)
    colours = _colour_map(_cell_map(level.astype(np.float32), layout))
    grey = view.convert("L").resize((layout.side, layout.side), Image.Resampling.BICUBIC)
    pixels = 0.75 * colours + 0.25 * np.asarray(grey, dtype=np.float32)[..., None]
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _colour_map(level: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] -> RGB float colours by linear interpolation between the anchors."""
    position = np.clip(level, 0, 1) * (len(HEAT_ANCHORS) - 1)
    low = np.minimum(position.astype(int), len(HEAT_ANCHORS) - 2)
    frac = (position - low)[..., None]
    return HEAT_ANCHORS[low] * (1 - frac) + HEAT_ANCHORS[low + 1] * frac


# ---------------------------------------------------------------- content-score regions


def _counted_patches(
    geometry: ImageGeometry, selection: Selection, heat: np.ndarray, alpha: float
) -> _Counted | None:
    """Regions and highlighted patches as the strategy counts them (None without sub-images)."""
    m, n = geometry.num_sub_images, geometry.tokens_per_partition
    if not m:
        return None
    if selection.strategy == "hired-ref":  # equal contiguous chunks of the raster sequence
        region, k = 1 + (np.arange(n) * m) // n, int(n * (1 - float(alpha)))
    else:
        region, k = geometry.full_to_sub_image(), highlight_count(alpha, n)
    hot = top_indices(heat, k)
    scores = np.bincount(region[hot], minlength=m + 1).astype(np.int64)
    given = selection.content_scores
    if given is not None and not np.array_equal(np.asarray(given), scores):
        what = "the alpha the selection was made with (its content scores differ)"
        raise InvalidArgumentError(expected("alpha", what, alpha))
    return _Counted(region, hot, scores)


def _draw_regions(draw: ImageDraw.ImageDraw, scene: _Scene) -> None:
    """Region boundaries, a dot on each highlighted patch, and S[p] at each region's centre."""
    if scene.counted is None:
        return
    layout, counted = scene.layout, scene.counted
    n, c_px, (hx, hy) = layout.n, layout.cell_px, layout.heat
    grid = counted.region.reshape(n, n)
    for r, c in zip(*np.nonzero(grid[:, 1:] != grid[:, :-1]), strict=True):
        x = hx + (c + 1) * c_px
        draw.line([(x, hy + r * c_px), (x, hy + (r + 1) * c_px)], REGION_LINE, 3)
    for r, c in zip(*np.nonzero(grid[1:, :] != grid[:-1, :]), strict=True):
        y = hy + (r + 1) * c_px
        draw.line([(hx + c * c_px, y), (hx + (c + 1) * c_px, y)], REGION_LINE, 3)
    for token in counted.hot:
        x, y = hx + (token % n + 0.5) * c_px, hy + (token // n + 0.5) * c_px
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(255, 255, 255), outline=INK)
    for part in range(1, scene.geometry.num_partitions):
        rows, cols = np.nonzero(grid == part)
        if rows.size:
            centre = (hx + (cols.mean() + 0.5) * c_px, hy + (rows.mean() + 0.5) * c_px)
            _label(draw, centre, f"S{part} = {counted.scores[part]}")


def _label(draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str) -> None:
    """White text on a dark box centred at `centre`."""
    font = _font(15)
    box = draw.textbbox(centre, text, font=font, anchor="mm")
    draw.rectangle([box[0] - 5, box[1] - 4, box[2] + 5, box[3] + 4], fill=INK)
    draw.text(centre, text, fill=(255, 255, 255), font=font, anchor="mm")


# ---------------------------------------------------------------- titles and legend


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


SIGNAL_TITLES = {"cls": "CLS attention", "received": "attention received"}


def _draw_texts(draw: ImageDraw.ImageDraw, scene: _Scene, signal_title: str) -> None:
    """Header, legend, one title per panel."""
    draw.multiline_text((MARGIN, MARGIN), _header(scene), fill=INK, font=_font(16), spacing=4)
    _legend(draw, MARGIN + 2, MARGIN + 50)
    titles = [_panel_title(scene, part) for part in range(scene.geometry.num_partitions)]
    note = (
        f"lines: sub-image regions; dots: top-{len(scene.counted.hot)} patches (S counts them)"
        if scene.counted is not None
        else "one partition: no sub-image regions, no content scores"
    )
    titles.append(f"layer-0 {signal_title} of the full image (sum over heads)\n{note}")
    for (x, y), text in zip((*scene.layout.origins, scene.layout.heat), titles, strict=True):
        draw.multiline_text((x, y - TITLE_H + 2), text, fill=INK, font=_font(14), spacing=3)


def _header(scene: _Scene) -> str:
    """What was run and what came out, in two lines."""
    geometry, selection = scene.geometry, scene.selection
    total = geometry.num_partitions * geometry.tokens_per_partition
    line1 = (
        f"strategy {selection.strategy}: budget {selection.budget}, kept "
        f"{selection.num_kept} of {selection.num_valid} valid visual tokens ({total} encoded)"
    )
    (gh, gw), best = geometry.grid, _canvas(geometry)
    parts = (
        f"full image + {gh}x{gw} sub-images of the {best[1]}x{best[0]} canvas"
        if geometry.num_sub_images
        else "one partition (no sub-images)"
    )
    return f"{line1}\nimage {scene.image.width}x{scene.image.height} px: {parts}"


def _canvas(geometry: ImageGeometry | TileGeometry) -> tuple[int, int]:
    """(height, width) the sub-images are cut from: LLaVA's best resolution, a tiled canvas."""
    return geometry.canvas if isinstance(geometry, TileGeometry) else geometry.best_resolution


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    """Swatches: kept, dropped, removed by unpadding. The kept swatch is near-magenta."""
    font = _font(14)
    entries = (
        "kept token",
        "dropped token",
        "removed by unpadding or resize (never sent to the LLM)",
    )
    for entry, text in enumerate(entries):
        box = [x, y, x + 15, y + 15]
        if entry == 0:
            draw.rectangle(box, fill=(235, 235, 235), outline=NEAR_MARKER, width=OUTLINE_PX)
        elif entry == 1:
            draw.rectangle(box, fill=(170, 170, 170), outline=GRID)
        else:
            draw.rectangle(box, fill=INVALID_BASE)
            draw.line([x, y + 15, x + 15, y], INVALID_HATCH, 2)
        draw.text((x + 22, y + 8), text, fill=INK, font=font, anchor="lm")
        x += 42 + int(draw.textlength(text, font=font))


def _panel_title(scene: _Scene, part: int) -> str:
    """Two lines: which partition (and its S), then B_p, kept and valid counts."""
    geometry, states = scene.geometry, scene.states[part]
    kept, valid = int((states == KEPT).sum()), int((states != INVALID).sum())
    if part == 0:
        name = "full image (partition 0)" if geometry.num_sub_images else "image (one partition)"
    else:
        row, col = divmod(part - 1, geometry.grid[1])
        name = f"sub-image {part} (row {row + 1}, col {col + 1})"
        name += f"   S{part} = {scene.counted.scores[part]}" if scene.counted is not None else ""
    budget = int(scene.selection.partition_budgets[part])
    return f"{name}\nB{part} = {budget}   kept {kept} of {valid} valid"


# ---------------------------------------------------------------- outlines, report, file


def _without_marker(canvas: Image.Image) -> np.ndarray:
    """Canvas pixels with any pixel of the marker colour nudged off it."""
    pixels = np.array(canvas, dtype=np.uint8)
    pixels[(pixels == MARKER).all(axis=2)] = NEAR_MARKER
    return pixels


def _paint_outlines(pixels: np.ndarray, scene: _Scene) -> np.ndarray:
    """An OUTLINE_PX-wide marker ring inside every kept cell."""
    layout = scene.layout
    inner = np.arange(layout.cell_px)
    edge = (inner < OUTLINE_PX) | (inner >= layout.cell_px - OUTLINE_PX)
    ring = np.tile(edge[:, None] | edge[None, :], (layout.n, layout.n))
    for part, (x, y) in enumerate(layout.origins):
        mask = ring & (_cell_map(scene.states[part], layout) == KEPT)
        pixels[y : y + layout.side, x : x + layout.side][mask] = MARKER
    return pixels


def _cell_boxes(layout: _Layout, origin: tuple[int, int]) -> np.ndarray:
    """[N, 4] (x0, y0, x1, y1) of a panel's cells in raster order, x1 / y1 exclusive."""
    rows, cols = np.divmod(np.arange(layout.n * layout.n), layout.n)
    x0, y0 = origin[0] + cols * layout.cell_px, origin[1] + rows * layout.cell_px
    return np.stack([x0, y0, x0 + layout.cell_px, y0 + layout.cell_px], axis=1).astype(np.int64)


def _report(path: Path, scene: _Scene) -> ShowReport:
    """Where every cell is and which ones were drawn as kept."""
    layout, selection = scene.layout, scene.selection
    scores = selection.content_scores if scene.counted is None else scene.counted.scores
    hx, hy = layout.heat
    return ShowReport(
        path=path,
        size=layout.size,
        strategy=selection.strategy,
        cell_px=layout.cell_px,
        outline_px=OUTLINE_PX,
        marker=MARKER,
        cell_boxes=tuple(_cell_boxes(layout, origin) for origin in layout.origins),
        highlighted=tuple(tuple(np.flatnonzero(s == KEPT).tolist()) for s in scene.states),
        invalid=tuple(tuple(np.flatnonzero(s == INVALID).tolist()) for s in scene.states),
        partition_budgets=tuple(int(b) for b in selection.partition_budgets),
        content_scores=None if scores is None else tuple(int(s) for s in scores),
        heat_box=(hx, hy, hx + layout.side, hy + layout.side),
    )


def _save_atomic(picture: Image.Image, path: Path) -> Path:
    """Write a PNG next to `path`, then rename it into place."""
    path = path.expanduser()
    if not path.parent.is_dir():
        where = str(path.parent)
        raise InvalidArgumentError(expected("output directory", "an existing directory", where))
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            picture.save(stream, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------- one call from a pipeline


def show(
    pipeline: Pipeline,
    image: Image.Image,
    out_path: str | Path,
    options: SelectionOptions,
    cell_px: int = DEFAULT_CELL_PX,
) -> ShowReport:
    """Encode `image`, select tokens as `run` would, and draw the selection to `out_path`."""
    pixels, geometry = pipeline.preprocess(image)
    vision = pipeline.encode(pixels)
    selection = pipeline.select(geometry, vision, options)
    views = views_from_pixels(pixels.float().cpu().numpy(), *_normalisation(pipeline))
    heat = vision.cls_init.float().cpu().numpy().sum(axis=1, dtype=np.float32)
    if isinstance(geometry, TileGeometry):
        views, heat = _tiled_views(geometry, views, heat)
    return selection_figure(
        image,
        geometry,
        selection,
        heat,
        out_path,
        views=views,
        alpha=options.alpha,
        cell_px=cell_px,
        signal=vision.signal,
    )


def _tiled_views(
    geometry: TileGeometry, views: list[Image.Image], heat: np.ndarray
) -> tuple[list[Image.Image], np.ndarray]:
    """Tiled families: the stock image order (tiles, global view last) put into partition order
    (global view first, as the encoder's rows are), and per-patch heat summed per LLM token."""
    order = np.roll(np.arange(len(views)), 1)
    return [views[i] for i in order], geometry.block_scores(heat)


def _normalisation(pipeline: Pipeline) -> tuple[Any, Any, float]:
    """(mean, std, rescale factor) the image processor applied to the pixels."""
    processor = pipeline.processor.image_processor
    normalised = getattr(processor, "do_normalize", True)
    mean = processor.image_mean if normalised else (0.0, 0.0, 0.0)
    std = processor.image_std if normalised else (1.0, 1.0, 1.0)
    rescale = processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0
    return mean, std, float(rescale)
