"""A small evaluation set the project draws itself: numbers, shapes, colours and counts.

Real benchmarks (VQAv2, DocVQA, ChartQA) cannot be downloaded here, and a harness still needs a
set whose answers are certain. Each image is drawn with PIL primitives only (digits as seven-
segment bars, so no font file is involved) from a seeded RNG: the same seed gives the same
pictures and questions on every machine. `scripts/make_eval_set.py` writes the committed copy
into `edge_hired/data/evalset/`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from edge_hired.evaluation.dataset import EVALSET_FILE

__all__ = ["COLOURS", "KINDS", "SyntheticSample", "make_samples", "write_eval_set"]

SIZE = (320, 240)  # (width, height)
BACKGROUND, INK = 0, 1
#: Colour names and RGB values; palette index = position + 2 (0 background, 1 ink).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 200, 30),
    "purple": (135, 60, 175),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
# Seven-segment digits: which of the bars a (top), b (top right), c (bottom right), d (bottom),
# e (bottom left), f (top left), g (middle) are lit.
SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class SyntheticSample:
    """One drawn picture with its question and the answers that count as right."""

    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    image: Image.Image


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A light grey palette image: index 0 background, 1 ink, then COLOURS in order."""
    image = Image.new("P", SIZE, BACKGROUND)
    palette = [235, 235, 235, 25, 25, 35]
    for rgb in COLOURS.values():
        palette.extend(rgb)
    image.putpalette(palette)
    return image, ImageDraw.Draw(image)


def _colour_index(name: str) -> int:
    return list(COLOURS).index(name) + 2


def _segment_boxes(left: int, top: int, width: int, height: int, bar: int) -> dict[str, Box]:
    """The rectangle of each seven-segment bar of a digit cell."""
    mid, right, bottom = top + height // 2, left + width, top + height
    return {
        "a": (left + bar, top, right - bar, top + bar),
        "b": (right - bar, top + bar, right, mid),
        "c": (right - bar, mid, right, bottom - bar),
        "d": (left + bar, bottom - bar, right - bar, bottom),
        "e": (left, mid, left + bar, bottom - bar),
        "f": (left, top + bar, left + bar, mid),
        "g": (left + bar, mid - bar // 2, right - bar, mid + bar // 2),
    }


def draw_number(draw: ImageDraw.ImageDraw, text: str, height: int = 120, fill: int = INK) -> None:
    """Draw the digits of `text` centred, as seven-segment bars `height` pixels tall."""
    width, bar, gap = height // 2, max(height // 10, 2), height // 5
    total = len(text) * width + (len(text) - 1) * gap
    left, top = (SIZE[0] - total) // 2, (SIZE[1] - height) // 2
    for position, digit in enumerate(text):
        boxes = _segment_boxes(left + position * (width + gap), top, width, height, bar)
        for segment in SEGMENTS[digit]:
            draw.rectangle(boxes[segment], fill=fill)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, fill: int) -> None:
    """A filled circle, square or triangle inscribed in `box`."""
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=fill)


def _free_boxes(rng: random.Random, count: int, low: int = 34, high: int = 54) -> list[Box]:
    """`count` square boxes inside the canvas that neither overlap nor touch (8 px apart)."""
    boxes: list[Box] = []
    while len(boxes) < count:
        side = rng.randint(low, high)
        left, top = rng.randint(8, SIZE[0] - side - 8), rng.randint(8, SIZE[1] - side - 8)
        box = (left, top, left + side, top + side)
        if all(_apart(box, other, 8) for other in boxes):
            boxes.append(box)
    return boxes


def _apart(a: Box, b: Box, margin: int) -> bool:
    return (
        a[2] + margin <= b[0]
        or b[2] + margin <= a[0]
        or a[3] + margin <= b[1]
        or b[3] + margin <= a[1]
    )


def _number(rng: random.Random, index: int) -> tuple[str, tuple[str, ...], Image.Image]:
    image, draw = _canvas()
    value = str(rng.randint(10, 999))
    draw_number(draw, value, height=rng.choice((90, 110, 130)))
    return "What number is written in the image?", (value,), image


def _count(rng: random.Random, index: int) -> tuple[str, tuple[str, ...], Image.Image]:
    image, draw = _canvas()
    circles, distractors = index % 6 + 1, rng.randint(0, 2)
    boxes = _free_boxes(rng, circles + distractors)
    for number, box in enumerate(boxes):
        shape = "circle" if number < circles else rng.choice(("square", "triangle"))
        draw_shape(draw, shape, box, _colour_index(rng.choice(list(COLOURS))))
    return "How many circles are there?", (str(circles),), image


def _colour(rng: random.Random, index: int) -> tuple[str, tuple[str, ...], Image.Image]:
    image, draw = _canvas()
    names = list(COLOURS)
    colour = names[index % len(names)]
    others = rng.sample([n for n in names if n != colour], 2)
    square, *rest = _free_boxes(rng, 3, low=50, high=70)
    draw_shape(draw, "square", square, _colour_index(colour))
    for shape, box, name in zip(("circle", "triangle"), rest, others, strict=True):
        draw_shape(draw, shape, box, _colour_index(name))
    return "What colour is the square?", (colour,), image


def _shape(rng: random.Random, index: int) -> tuple[str, tuple[str, ...], Image.Image]:
    image, draw = _canvas()
    shape = SHAPES[index % len(SHAPES)]
    side = rng.randint(110, 170)
    left, top = (SIZE[0] - side) // 2 + rng.randint(-40, 40), (SIZE[1] - side) // 2
    draw_shape(
        draw, shape, (left, top, left + side, top + side), _colour_index(rng.choice(list(COLOURS)))
    )
    return "What shape is in the image?", (shape,), image


KINDS: dict[str, Callable[[random.Random, int], tuple[str, tuple[str, ...], Image.Image]]] = {
    "number": _number,
    "count": _count,
    "colour": _colour,
    "shape": _shape,
}


def make_samples(seed: int = 0, per_kind: int = 6) -> list[SyntheticSample]:
    """`per_kind` samples of each kind, interleaved (number, count, colour, shape, number, ...)."""
    rng = random.Random(seed)
    samples = []
    for index in range(per_kind):
        for kind, draw in KINDS.items():
            question, answers, image = draw(rng, index)
            samples.append(SyntheticSample(f"{kind}-{index:02d}", kind, question, answers, image))
    return samples


def write_eval_set(out_dir: str | Path, seed: int = 0, per_kind: int = 6) -> Path:
    """Write `images/<id>.png` and `evalset.jsonl` into `out_dir`; return the JSONL path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in make_samples(seed, per_kind):
        relative = f"images/{sample.id}.png"
        sample.image.save(out_dir / relative, optimize=True)
        rows.append(
            {
                "id": sample.id,
                "image": relative,
                "question": sample.question,
                "answers": list(sample.answers),
                "kind": sample.kind,
            }
        )
    path = out_dir / EVALSET_FILE
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
