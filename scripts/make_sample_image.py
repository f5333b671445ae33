"""Draw the bundled demo picture `edge_hired/data/sample.png`.

Demos and smoke tests need a real, non-square image without network access. 800x560 makes
LLaVA-NeXT pick the 672x672 grid with vertical padding, so the sample exercises unpadding too.
The drawing is deterministic (no randomness); run `python scripts/make_sample_image.py` to redraw.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 800, 560
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "edge_hired" / "data" / "sample.png"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font at `size` px (bitmap fallback without FreeType)."""
    return ImageFont.load_default(size=size)


def _background(draw: ImageDraw.ImageDraw) -> None:
    """A sky-to-grass background in a few flat bands (flat colours keep the PNG small)."""
    bands = [(235, 242, 250), (215, 230, 245), (195, 218, 240)]
    band = HEIGHT * 2 // 3 // len(bands)
    for index, colour in enumerate(bands):
        draw.rectangle((0, index * band, WIDTH, (index + 1) * band), fill=colour)
    draw.rectangle((0, band * len(bands), WIDTH, HEIGHT), fill=(120, 180, 90))


def _star(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    """Corners of a five-pointed star centred on (cx, cy), first point straight up."""
    corners = []
    for index in range(10):
        radius = outer if index % 2 == 0 else inner
        angle = math.pi * index / 5 - math.pi / 2
        corners.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return corners


def _shapes(draw: ImageDraw.ImageDraw) -> None:
    """A red circle, a blue square, a green triangle, a yellow star and a house."""
    draw.ellipse((60, 120, 220, 280), fill=(220, 40, 40), outline=(90, 10, 10), width=4)
    draw.rectangle((280, 130, 420, 270), fill=(40, 80, 210), outline=(10, 20, 90), width=4)
    draw.polygon([(560, 120), (480, 280), (640, 280)], fill=(40, 170, 70), outline=(10, 70, 20))
    draw.polygon(_star(720, 200, 65, 27), fill=(250, 210, 30), outline=(120, 90, 0))
    draw.rectangle((300, 360, 500, 500), fill=(200, 60, 50))
    draw.polygon([(280, 360), (400, 290), (520, 360)], fill=(110, 60, 40))
    draw.rectangle((375, 430, 425, 500), fill=(90, 50, 30))


def _text(draw: ImageDraw.ImageDraw) -> None:
    """A title, a sign with words and a line of numbers."""
    draw.text((WIDTH // 2, 40), "edge-hired sample", font=_font(40), fill=(20, 20, 60), anchor="mm")
    draw.rectangle((560, 380, 760, 460), fill=(255, 255, 255), outline=(0, 0, 0), width=3)
    draw.text((660, 420), "STOP HERE", font=_font(30), fill=(180, 0, 0), anchor="mm")
    draw.text((20, 520), "1 2 3 4 5 6 7 8 9 10", font=_font(24), fill=(255, 255, 255))


def draw_sample() -> Image.Image:
    """Return the deterministic 800x560 RGB sample picture."""
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    _background(draw)
    _shapes(draw)
    _text(draw)
    return image


def main() -> None:
    """Write the sample picture (default: edge_hired/data/sample.png)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output PNG path")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_sample().save(out, format="PNG", optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
