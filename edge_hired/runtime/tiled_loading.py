"""Load the parts of an InternVL3/3.5 or SmolVLM2 / Idefics3 checkpoint that HiRED needs.

The processor is built without torchvision and without num2words: the PIL image processor,
the tokenizer and the chat template the checkpoint ships (`ImageTextProcessor`). InternVL's
image processor is told to tile (`crop_to_patches=True`, its own `max_patches`) as
`InternVLProcessor` tells it; the hub's preprocessor config alone gives one 448 px image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    Idefics3ForConditionalGeneration,
    InternVLForConditionalGeneration,
    SmolVLMForConditionalGeneration,
)

from edge_hired.runtime.processors import load_processor
from edge_hired.runtime.tiled_encoder import TiledVisionEncoder
from edge_hired.runtime.tiled_facts import TiledFacts

TILED_MODEL_CLASSES: dict[str, type] = {
    "internvl": InternVLForConditionalGeneration,
    "smolvlm": SmolVLMForConditionalGeneration,
    "idefics3": Idefics3ForConditionalGeneration,
}
#: Full module paths bitsandbytes leaves alone (the tower's q/k are read, the projector runs on
#: kept tokens only; any skip list quantizes `lm_head` unless listed).
TILED_KEEP_UNQUANTIZED = {
    "internvl": ["model.vision_tower", "model.multi_modal_projector", "lm_head"],
    "smolvlm": ["model.vision_model", "model.connector", "lm_head"],
}


def load_tiled_processor(source: str, model_type: str, revision: str | None = None) -> Any:
    """Image processor + tokenizer + chat template; InternVL's image processor tiles."""
    return load_processor(source, model_type, revision)


def tiled_modules(
    model: torch.nn.Module, facts: TiledFacts
) -> tuple[TiledVisionEncoder, Callable[[torch.Tensor], torch.Tensor]]:
    """The encoder with HiRED's signal, and the projector of one pixel-shuffled token."""
    inner = model.model
    if facts.tile_family == "internvl":
        return TiledVisionEncoder(inner.vision_tower, facts), inner.multi_modal_projector
    return TiledVisionEncoder(inner.vision_model, facts), inner.connector.modality_projection
