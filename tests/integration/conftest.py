"""Tiny random-weight checkpoints, built once per test session and loaded like hub models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_hired.models.tiny import build_checkpoint


@pytest.fixture(scope="session")
def tiny_next_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava-next", tmp_path_factory.mktemp("models") / "tiny-next")


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava", tmp_path_factory.mktemp("models") / "tiny-llava")


def textured_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A deterministic image with structure (gradients plus blocks), not flat noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], -1)
    blocks = rng.integers(0, 256, size=(max(height // 64, 1) + 1, max(width // 64, 1) + 1, 3))
    pixels = (base + blocks[y // 64, x // 64]) % 256
    return Image.fromarray(pixels.astype(np.uint8))
