"""The image placeholder of a Qwen-VL prompt, expanded to the number of tokens the LLM receives.

The chat template writes one `<|vision_start|><|image_pad|><|vision_end|>` per image; the stock
processor repeats `<|image_pad|>` once per merge unit (grid_t x grid_h x grid_w / merge^2). With
tokens dropped it must repeat once per *kept* unit, so the ids line up with the features.
"""

from __future__ import annotations

from edge_hired.errors import InvalidArgumentError, expected

IMAGE_PAD = "<|image_pad|>"


def expand_image_pad(text: str, count: int, pad: str = IMAGE_PAD) -> str:
    """`text` with its one image placeholder repeated `count` times (count >= 1)."""
    if text.count(pad) != 1:
        raise InvalidArgumentError(expected(f"{pad} in the prompt", "exactly one", text.count(pad)))
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError(expected("image token count", "a positive integer", count))
    return text.replace(pad, pad * count)
