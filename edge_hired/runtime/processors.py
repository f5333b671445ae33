"""The processor of a checkpoint, including one transformers cannot build here.

`LlavaOnevisionProcessor` insists on its video processor, which needs torchvision (not
installed on the CPU set-up: it replaces torch). Images need only the image processor, the
tokenizer and the chat template the checkpoint ships, so for OneVision those three are loaded
on their own into `ImageTextProcessor`, which offers the few processor calls edge-hired makes.

Always the PIL image processors: with torchvision installed (every GPU image has it) transformers
would pick its torchvision processors, whose pixels differ slightly from the PIL path every test,
parity figure and bundle was made with. `backend="pil"` holds on every transformers the support
matrix allows (5.20+), with or without torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_hired.errors import ModelLoadError

TEMPLATE_FILE = "chat_template.jinja"
#: Families whose AutoProcessor also builds a video processor (torchvision): loaded as the image
#: processor, tokenizer and chat template instead (OneVision and the Qwen-VL families).
NEEDS_VIDEO_PROCESSOR = ("llava_onevision", "qwen3_vl", "qwen2_5_vl", "qwen3_5")
#: The one preprocessing backend: the PIL image processors (see the module docstring).
IMAGE_BACKEND = "pil"
TORCHVISION_HINT = (
    "transformers needs torchvision for this processor; on a GPU machine `pip install "
    "torchvision` matching your torch (never on the CPU set-up: it replaces torch)"
)


@dataclass
class ImageTextProcessor:
    """Image processor + tokenizer + chat template: the image half of a multimodal processor."""

    image_processor: Any
    tokenizer: Any
    chat_template: str | None
    image_token: str = "<image>"

    def apply_chat_template(self, conversation: list, add_generation_prompt: bool = True) -> str:
        """The prompt text, rendered with the checkpoint's own template."""
        return self.tokenizer.apply_chat_template(
            conversation,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the three parts the way a hub checkpoint ships them."""
        directory = Path(directory)
        self.image_processor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.chat_template:
            (directory / TEMPLATE_FILE).write_text(self.chat_template)


def load_processor(source: str | Path, family: str, revision: str | None = None) -> Any:
    """AutoProcessor, or for OneVision its image processor, tokenizer and chat template."""
    if family in TILED_PROCESSORS:  # InternVL / SmolVLM: the image half, tiling on
        return tiling_on(load_image_text_processor(source, revision), family)
    from transformers import AutoProcessor

    if family not in NEEDS_VIDEO_PROCESSOR:
        return AutoProcessor.from_pretrained(source, revision=revision, backend=IMAGE_BACKEND)
    return load_image_text_processor(source, revision)


def load_image_text_processor(source: str | Path, revision: str | None = None) -> Any:
    """The image processor, tokenizer and chat template of `source`, or a one-line refusal."""
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        image_processor = AutoImageProcessor.from_pretrained(
            source, revision=revision, backend=IMAGE_BACKEND
        )
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError, ImportError, AttributeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(
            f"{source}: cannot load the processor ({first}); {TORCHVISION_HINT}"
        ) from error
    template = _read_template(source, revision) or getattr(tokenizer, "chat_template", None)
    token = getattr(tokenizer, "image_token", None) or "<image>"
    return ImageTextProcessor(image_processor, tokenizer, template, token)


def _read_template(source: str | Path, revision: str | None) -> str | None:
    """chat_template.jinja, or the template of chat_template.json, if the checkpoint has one."""
    import json

    from transformers.utils import cached_file

    for name in (TEMPLATE_FILE, "chat_template.json"):
        path = cached_file(
            str(source), name, revision=revision, _raise_exceptions_for_missing_entries=False
        )
        if path:
            text = Path(path).read_text()
            return text if name == TEMPLATE_FILE else json.loads(text).get("chat_template")
    return None


#: Tiled families: their processors need torchvision (video) and SmolVLM's num2words; images need
#: only the PIL image processor, tokenizer and chat template. InternVL's must be told to tile.
TILED_PROCESSORS = ("internvl", "smolvlm", "idefics3")


def tiling_on(processor: ImageTextProcessor, family: str) -> ImageTextProcessor:
    """InternVL: `crop_to_patches=True` (with its own max_patches), as `InternVLProcessor` asks;
    the hub's preprocessor config alone says false and gives one 448 px image."""
    if family == "internvl":
        processor.image_processor.crop_to_patches = True
    return processor
