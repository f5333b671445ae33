"""Helpers several test modules share: the plan CLI under main's contract, test images, the stock
transformers generation the pipeline is compared with, and readers of the selection picture's
pixels. Test modules import these from here, never from one another."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from edge_hired.cli.main import EXIT_USER_ERROR, OneLineParser
from edge_hired.cli.plan_command import add_plan_parser, add_profile_parser, add_profiles_parser
from edge_hired.errors import EdgeHiredError
from edge_hired.visualize import MARKER

# ------------------------------------------------------------ the CLI


def run_cli(argv: list[str]) -> int:
    """The plan / profiles / profile commands under main's contract: user errors exit 2."""
    parser = OneLineParser(prog="edge-hired")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in (add_plan_parser, add_profiles_parser, add_profile_parser):
        add(sub)
    args: argparse.Namespace = parser.parse_args(argv)
    try:
        return args.handler(args)
    except EdgeHiredError as error:
        print(f"edge-hired: error: {error}")
        return EXIT_USER_ERROR


# ------------------------------------------------------------ images and the stock model

PROMPT = "What is in the picture?"


def textured_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A deterministic image with structure (gradients plus blocks), not flat noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], -1)
    blocks = rng.integers(0, 256, size=(max(height // 64, 1) + 1, max(width // 64, 1) + 1, 3))
    pixels = (base + blocks[y // 64, x // 64]) % 256
    return Image.fromarray(pixels.astype(np.uint8))


def stock_inputs(model_dir: Path, image, prompt: str = PROMPT):
    """The checkpoint's own processor applied to one image and question, as transformers does
    (on the PIL image processor, edge-hired's one backend, even where torchvision is installed)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, backend="pil")
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    return processor(images=image, text=text, return_tensors="pt")


def stock_onevision_inputs(model_dir: Path, image, prompt: str = PROMPT):
    """What LlavaOnevisionProcessor would produce, from its parts and transformers' own counts.

    transformers cannot build the OneVision processor without torchvision (its video
    processor), so the image processor, the chat template and the processor's own token-count
    arithmetic (`_get_number_of_features`, unbound) stand in for it.
    """
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    from transformers.models.llava_onevision.processing_llava_onevision import (
        LlavaOnevisionProcessor as Stock,
    )

    image_processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    pixels = image_processor(images=image, return_tensors="pt")
    side = config.vision_config.image_size // config.vision_config.patch_size
    counter = SimpleNamespace(
        image_processor=image_processor,
        num_image_tokens=side * side,
        vision_aspect_ratio=config.vision_aspect_ratio,
    )
    counter._get_unpadded_features = Stock._get_unpadded_features.__get__(counter)
    size = config.vision_config.image_size
    count = Stock._get_number_of_features(counter, image.height, image.width, size, size)
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
    ]
    template = (Path(model_dir) / "chat_template.jinja").read_text()
    text = tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    encoded = tokenizer(text.replace("<image>", "<image>" * count), return_tensors="pt")
    return {**encoded, "pixel_values": pixels["pixel_values"], "image_sizes": pixels["image_sizes"]}


def stock_generate(model, inputs, max_new_tokens: int = 6) -> list[int]:
    """The ids stock greedy `generate` appends to the prompt."""
    import torch

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


# ------------------------------------------------------------ selection picture pixel readers


def read_png(path: Path) -> np.ndarray:
    """The PNG's pixels as [H, W, 3] uint8."""
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def marker_mask(pixels: np.ndarray, marker: tuple[int, int, int] = MARKER) -> np.ndarray:
    return (pixels == np.array(marker, dtype=np.uint8)).all(axis=2)


def ring_size(cell_px: int, outline_px: int) -> int:
    return cell_px * cell_px - (cell_px - 2 * outline_px) ** 2


def cell_ring(pixels: np.ndarray, box: np.ndarray, outline_px: int) -> np.ndarray:
    """[H, W] boolean of one cell's outline ring pixels, cropped from the picture."""
    x0, y0, x1, y1 = (int(v) for v in box)
    inner = np.ones((y1 - y0, x1 - x0), dtype=bool)
    inner[outline_px:-outline_px, outline_px:-outline_px] = False
    return marker_mask(pixels[y0:y1, x0:x1]) & inner


def highlighted_from_pixels(
    pixels: np.ndarray, boxes: list[np.ndarray], cell_px: int, outline_px: int
) -> list[list[int]]:
    """Per partition, the cells whose whole outline ring is marker-coloured in the picture."""
    full = ring_size(cell_px, outline_px)
    return [
        [t for t, box in enumerate(part) if cell_ring(pixels, box, outline_px).sum() == full]
        for part in boxes
    ]


def panel_boxes(origins: list[list[int]], n: int, cell_px: int) -> list[np.ndarray]:
    """Cell boxes rebuilt from each panel's top-left pixel, raster order."""
    rows, cols = np.divmod(np.arange(n * n), n)
    out = []
    for x, y in origins:
        x0, y0 = x + cols * cell_px, y + rows * cell_px
        out.append(np.stack([x0, y0, x0 + cell_px, y0 + cell_px], axis=1))
    return out


def cell_pixels(pixels: np.ndarray, box: np.ndarray, margin: int) -> np.ndarray:
    """[k, 3] pixels of a cell's interior (grid line and outline ring excluded)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return pixels[y0 + margin : y1 - margin, x0 + margin : x1 - margin].reshape(-1, 3)
