"""Qwen prompt expansion and Qwen2.5-VL's window order, against the stock processor and encoder.

- The stock `Qwen3VLProcessor` / `Qwen2_5_VLProcessor` (built with their video-processor class
  check skipped: without torchvision transformers cannot resolve it) expand the image
  placeholder exactly as the runtime's `expanded_prefix` does with our geometry's token count,
  and produce the same pixels as the saved image processor alone.
- Inside the stock Qwen2.5-VL tower, the hidden states that enter the blocks are the patch
  embeddings in window order: `unpermute_windows` recovers the stock order from them, and the
  last block's output un-permuted and merged is the model's (raster-ordered) image features, so
  a signal read at the last full-attention block maps to merge units by `block_scores`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from edge_hired.hired.native_geometry import native_geometry, unpermute_windows, window_patch_index
from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.prefix import split_at_image
from edge_hired.runtime.qwen_prefix import expanded_prefix
from tests.integration.test_tiles_reference import noise

MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
]
PROCESSORS = {
    "tiny-qwen3-vl": Qwen3VLProcessor,
    "tiny-qwen2.5-vl": Qwen2_5_VLProcessor,
    "tiny-qwen3.5": Qwen3VLProcessor,  # the Qwen3.5 checkpoints name Qwen3VLProcessor
}
SHAPES = [(256, 256), (224, 448), (448, 224)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-parts")
    return {name: build_checkpoint(name, root / name) for name in PROCESSORS}


def stock_processor(directory: Path, family: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """The stock processor of `family` from the saved parts, video-processor check skipped."""
    check = ProcessorMixin.check_argument_for_proper_class

    def skip_video(self: object, name: str, arg: object) -> object:
        return None if name == "video_processor" else check(self, name, arg)  # type: ignore[arg-type]

    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class", skip_video)
    return PROCESSORS[family](
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(directory),
        tokenizer=AutoTokenizer.from_pretrained(directory),
        video_processor=None,
    )


@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("family", sorted(PROCESSORS))
def test_expansion_is_the_stock_processors(
    checkpoints: dict[str, Path],
    family: str,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = checkpoints[family]
    processor = stock_processor(directory, family, monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    image = noise(*size)
    stock = processor(text=[text], images=[image], return_tensors="pt")  # type: ignore[operator]
    alone = Qwen2VLImageProcessorPil.from_pretrained(directory)
    limits = alone.size["shortest_edge"], alone.size["longest_edge"]
    geometry = native_geometry(size, alone.patch_size, alone.merge_size, *limits)
    pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    before, after = split_at_image(tokenizer(text, return_tensors="pt")["input_ids"][0], pad_id)
    mine = torch.cat([expanded_prefix(before, geometry.num_tokens, pad_id), after])
    assert torch.equal(stock["input_ids"][0], mine)  # the runtime's expansion is the stock one
    assert torch.equal(stock["pixel_values"], alone(image, return_tensors="pt")["pixel_values"])


def test_window_order_inside_the_stock_qwen2_5_vl_tower(checkpoints: dict[str, Path]) -> None:
    directory = checkpoints["tiny-qwen2.5-vl"]
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    alone = Qwen2VLImageProcessorPil.from_pretrained(directory)
    pixels = alone(noise(224, 560), return_tensors="pt")  # 8 x 20 units: windows cut at the edge
    geometry = native_geometry((224, 560), 14, 2, 3136, 12845056)
    assert geometry.token_grid == (8, 20)
    seen: dict[str, torch.Tensor] = {}
    visual = model.model.visual
    hooks = [
        visual.patch_embed.register_forward_hook(lambda m, a, out: seen.update(embed=out)),
        visual.blocks[0].register_forward_pre_hook(
            lambda m, a, kw: seen.update(first=a[0] if a else kw["hidden_states"]),
            with_kwargs=True,
        ),
        visual.blocks[-1].register_forward_hook(lambda m, a, out: seen.update(last=out)),
    ]
    try:
        with torch.no_grad():
            features = model.model.get_image_features(**pixels).pooler_output[0]
    finally:
        for hook in hooks:
            hook.remove()
    embed, first = seen["embed"].numpy(), seen["first"].numpy()
    assert not np.array_equal(first, embed)
    np.testing.assert_array_equal(unpermute_windows(geometry, first.T).T, embed)
    order = torch.from_numpy(np.argsort(window_patch_index(geometry)))
    with torch.no_grad():
        merged = visual.merger(seen["last"][order])
    torch.testing.assert_close(merged, features)
