"""One preprocessing backend: the PIL image processors, even where torchvision is installed.

Every GPU image has torchvision, and transformers then resolves its torchvision image processors,
whose pixels differ slightly from the PIL path every test and bundle used. `load_processor` asks
for `backend="pil"`; here torchvision is made to look installed (the backend check transformers
consults) and each family must resolve only the PIL backend and give the very same pixels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers.models.auto.image_processing_auto as auto_image

from edge_hired.runtime.processors import load_processor
from tests.helpers import textured_image

pytestmark = pytest.mark.integration

FAMILIES = {
    "tiny_next_dir": "llava_next",
    "tiny_llava_dir": "llava",
    "tiny_siglip_dir": "llava",
    "tiny_onevision_dir": "llava_onevision",
}


def pixels(processor) -> torch.Tensor:
    image = textured_image(500, 700, seed=3)
    return processor.image_processor(images=image, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("fixture", sorted(FAMILIES))
def test_torchvision_does_not_change_the_preprocessing(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    family = FAMILIES[fixture]
    reference = pixels(load_processor(model_dir, family))
    resolved: list[str] = []
    resolve = auto_image._resolve_backend

    def recorded(*args, **kwargs) -> str:
        resolved.append(resolve(*args, **kwargs))
        return resolved[-1]

    monkeypatch.setattr(auto_image, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(auto_image, "_resolve_backend", recorded)
    processor = load_processor(model_dir, family)
    assert resolved and set(resolved) == {"pil"}
    assert type(processor.image_processor).__name__.endswith("Pil")
    assert torch.equal(pixels(processor), reference)
