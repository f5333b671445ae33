"""Picture of one selection under a native-resolution model (Qwen3-VL, Qwen3.5, Qwen2.5-VL).

One panel: the image at the processor's canvas with the merged grid (rows x cols LLM tokens) on
top, kept merge units in colour inside the magenta outline `visualize.MARKER`, dropped ones
grey. Beside it the signal HiRED ranked by (attention received at the signal block, summed per
merge unit) as a heat map. The same `ShowReport` as the LLaVA picture, one partition, so the
kept count can be read back from the pixels. `show_any` is the call behind `edge-hired show`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from edge_hired.hired import Selection
from edge_hired.hired.native_geometry import NativeGeometry
from edge_hired.visualize import (
    BACKGROUND,
    DEFAULT_CELL_PX,
    GRID,
    INK,
    MARGIN,
    MARKER,
    OUTLINE_PX,
    TITLE_H,
    ShowReport,
    _colour_map,
    _font,
    _save_atomic,
    _without_marker,
    show,
)

if TYPE_CHECKING:
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions


def native_figure(
    image: Image.Image,
    geometry: NativeGeometry,
    selection: Selection,
    signal: np.ndarray,
    out_path: str | Path,
    cell_px: int,
) -> ShowReport:
    """Draw the kept merge units of `selection` and the [N] `signal`; write a PNG."""
    rows, cols = geometry.token_grid
    width, height = cols * cell_px, rows * cell_px
    kept = np.zeros(rows * cols, dtype=bool)
    kept[np.asarray(selection.kept[0], dtype=np.int64)] = True
    canvas = Image.new("RGB", (3 * MARGIN + 2 * width, MARGIN + TITLE_H + height + MARGIN))
    canvas.paste(BACKGROUND, (0, 0, *canvas.size))
    top = MARGIN + TITLE_H
    canvas.paste(_tokens_panel(image, kept, rows, cols, cell_px), (MARGIN, top))
    canvas.paste(_signal_panel(signal, rows, cols, cell_px), (2 * MARGIN + width, top))
    _titles(ImageDraw.Draw(canvas), selection, geometry, width)
    pixels = _without_marker(canvas)
    pixels[top : top + height, MARGIN : MARGIN + width][_rings(kept, rows, cols, cell_px)] = MARKER
    path = _save_atomic(Image.fromarray(pixels), Path(out_path))
    boxes = _boxes(rows, cols, cell_px, (MARGIN, top))
    return ShowReport(
        path=path,
        size=canvas.size,
        strategy=selection.strategy,
        cell_px=cell_px,
        outline_px=OUTLINE_PX,
        marker=MARKER,
        cell_boxes=(boxes,),
        highlighted=(tuple(np.flatnonzero(kept).tolist()),),
        invalid=((),),
        partition_budgets=tuple(int(b) for b in selection.partition_budgets),
        content_scores=None,
        heat_box=(2 * MARGIN + width, top, 2 * MARGIN + 2 * width, top + height),
    )


def _tokens_panel(
    image: Image.Image, kept: np.ndarray, rows: int, cols: int, cell_px: int
) -> Image.Image:
    """The image over the merged grid: kept units in colour, dropped ones grey."""
    size = (cols * cell_px, rows * cell_px)
    pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), np.float32)
    luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = np.rint(0.3 * luma + 0.7 * 178)[..., None].repeat(3, axis=2)
    state = _cells(kept.reshape(rows, cols), cell_px)
    pixels = np.where(state[..., None], pixels, grey)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    pixels[(y % cell_px == 0) | (x % cell_px == 0)] = GRID
    return Image.fromarray(pixels.astype(np.uint8))


def _signal_panel(signal: np.ndarray, rows: int, cols: int, cell_px: int) -> Image.Image:
    """The per-unit signal as colour (min to max)."""
    values = np.asarray(signal, dtype=np.float32).reshape(rows, cols)
    span = float(values.max() - values.min())
    level = (values - values.min()) / span if span > 0 else np.full_like(values, 0.5)
    colours = _colour_map(_cells(level, cell_px))
    return Image.fromarray(np.clip(np.rint(colours), 0, 255).astype(np.uint8))


def _cells(values: np.ndarray, cell_px: int) -> np.ndarray:
    """A [rows, cols] map blown up to cell_px pixels per cell."""
    return np.repeat(np.repeat(values, cell_px, axis=0), cell_px, axis=1)


def _rings(kept: np.ndarray, rows: int, cols: int, cell_px: int) -> np.ndarray:
    """Pixels of an OUTLINE_PX-wide ring inside every kept cell."""
    inner = np.arange(cell_px)
    edge = (inner < OUTLINE_PX) | (inner >= cell_px - OUTLINE_PX)
    ring = np.tile(edge[:, None] | edge[None, :], (rows, cols))
    return ring & _cells(kept.reshape(rows, cols), cell_px)


def _boxes(rows: int, cols: int, cell_px: int, origin: tuple[int, int]) -> np.ndarray:
    """[N, 4] (x0, y0, x1, y1) of the cells in raster order, x1 / y1 exclusive."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    x0, y0 = origin[0] + c * cell_px, origin[1] + r * cell_px
    return np.stack([x0, y0, x0 + cell_px, y0 + cell_px], axis=1).astype(np.int64)


def _titles(
    draw: ImageDraw.ImageDraw, selection: Selection, geometry: NativeGeometry, width: int
) -> None:
    """What each panel shows."""
    rows, cols = geometry.token_grid
    kept = f"{selection.strategy}: kept {selection.num_kept} of {rows * cols} merge units"
    draw.text((MARGIN, MARGIN), f"{kept}\ngrid {rows} x {cols}", fill=INK, font=_font(13))
    heat = "attention received (signal block),\nsum per merge unit"
    draw.text((2 * MARGIN + width, MARGIN), heat, fill=INK, font=_font(13))


def show_any(
    pipeline: Pipeline,
    image: Image.Image,
    out_path: str | Path,
    options: SelectionOptions,
    cell_px: int = DEFAULT_CELL_PX,
) -> ShowReport:
    """`visualize.show` for every family: the native picture where the model is Qwen-VL."""
    if not isinstance(pipeline.facts.geometry_for((image.height, image.width)), NativeGeometry):
        return show(pipeline, image, out_path, options, cell_px)
    pixels, geometry = pipeline.preprocess(image)
    vision = pipeline.encode(pixels)
    selection = pipeline.select(geometry, vision, options)
    signal = vision.cls_final.float().cpu().numpy().sum(axis=1, dtype=np.float32)[0]
    return native_figure(image, geometry, selection, signal, out_path, cell_px)
