"""Run a tiled model with its own token knob turned down: the "resize" baseline.

`with_token_knob(pipeline, value)` gives a pipeline over the same loaded weights whose image
processor is called with `max_patches=value` (InternVL) or `size={"longest_edge": value}`
(SmolVLM), and whose facts describe that geometry; with strategy `full` it sends every token of
the smaller layout, which is what the stock model does with that processor setting.
`token_knob_for(pipeline, image_size, tokens)` picks the value that sends at most `tokens`.
`Pipeline.run` with strategy `resize` does both for a tiled model. (A pipeline is typed `Any`
here: this module is imported by `runtime.pipeline`.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.tile_knob import knob_for_tokens
from edge_hired.runtime.processors import ImageTextProcessor
from edge_hired.runtime.tiled_facts import TiledFacts


class KnobImageProcessor:
    """An image processor called with the knob's keyword; every attribute is the inner one's."""

    def __init__(self, inner: Any, options: dict[str, Any]) -> None:
        self.inner, self.options = inner, options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs, **self.options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def knob_values(facts: TiledFacts) -> list[int]:
    """The knob's settings: 1..max_patches tiles, or longest edges of 1..k tiles."""
    if facts.tile_family == "internvl":
        return list(range(1, facts.max_tiles + 1))
    return [facts.tile_size * k for k in range(1, facts.longest_edge // facts.tile_size + 1)]


def facts_with_knob(facts: TiledFacts, value: int) -> TiledFacts:
    """The facts of the same model with the knob at `value`."""
    if value not in knob_values(facts):
        raise InvalidArgumentError(expected("token knob", knob_values(facts), value))
    if facts.tile_family == "internvl":
        return replace(facts, min_tiles=min(facts.min_tiles, value), max_tiles=value)
    return replace(facts, longest_edge=value)


def with_token_knob(pipeline: Any, value: int) -> Any:
    """A pipeline over the same weights whose images are processed with the knob at `value`."""
    facts = pipeline.facts
    if not isinstance(facts, TiledFacts):
        raise InvalidArgumentError(
            expected("model", "a tiled family (InternVL, SmolVLM)", facts.family)
        )
    knobbed = facts_with_knob(facts, value)
    option = {"max_patches": value, "min_patches": knobbed.min_tiles}
    if facts.tile_family == "smolvlm":
        option = {"size": {"longest_edge": value}}
    processor = pipeline.processor
    image = KnobImageProcessor(processor.image_processor, option)
    wrapped = ImageTextProcessor(
        image, processor.tokenizer, processor.chat_template, processor.image_token
    )
    parts = replace(pipeline.parts, facts=knobbed, processor=wrapped)
    return type(pipeline)(parts, pipeline.device_reason)


def token_knob_for(pipeline: Any, image_size: tuple[int, int], tokens: int) -> int:
    """The knob value that sends at most `tokens` visual tokens for this image (or the least)."""
    facts = pipeline.facts
    return knob_for_tokens(
        lambda v: facts_with_knob(facts, v).geometry_for(image_size), knob_values(facts), tokens
    )
