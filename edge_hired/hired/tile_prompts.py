"""The image part of the prompt for tiled families, kept consistent with the kept tokens.

Each stock processor replaces the one image placeholder of the chat prompt with markers and one
image token per visual token. HiRED keeps fewer tokens per partition, so the runtime expands the
placeholder with the kept counts instead: with every token kept the strings below are exactly
the stock processors' (`InternVLProcessor.replace_image_token`, `get_image_prompt_string` in
transformers 5.23's processing_smolvlm.py), which the tests check.

- InternVL: `<img>` + K x `<IMG_CONTEXT>` + `</img>` for all tiles and the thumbnail together.
- SmolVLM: per tile `<fake_token_around_image><row_r_col_c>` + its tokens, a newline after each
  tile row, then a newline and `<fake_token_around_image><global-img>` + the global image's
  tokens + `<fake_token_around_image>`; a single view has only the global part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.tiles import TileGeometry


@dataclass(frozen=True)
class InternVLMarkers:
    """InternVL's image tokens (the -hf tokenizers' start / end / context image tokens)."""

    start: str = "<img>"
    context: str = "<IMG_CONTEXT>"
    end: str = "</img>"


@dataclass(frozen=True)
class SmolVLMMarkers:
    """SmolVLM's image tokens (the tokenizer's fake-image, image and global-image tokens)."""

    fake: str = "<fake_token_around_image>"
    image: str = "<image>"
    global_image: str = "<global-img>"


def internvl_image_prompt(
    counts: Sequence[int], markers: InternVLMarkers = InternVLMarkers()
) -> str:
    """The expansion of one InternVL image whose partitions keep `counts` tokens."""
    return f"{markers.start}{markers.context * sum(_counts(counts))}{markers.end}"


def smolvlm_image_prompt(
    geometry: TileGeometry, counts: Sequence[int], markers: SmolVLMMarkers = SmolVLMMarkers()
) -> str:
    """The expansion of one SmolVLM image whose partition p keeps counts[p] tokens."""
    kept = _counts(counts, geometry.num_partitions)
    rows, cols = geometry.grid
    text = ""
    for r in range(rows):
        for c in range(cols):
            tile = f"{markers.fake}<row_{r + 1}_col_{c + 1}>"
            text += tile + markers.image * kept[1 + r * cols + c]
        text += "\n"
    if rows:
        text += "\n"
    return text + f"{markers.fake}{markers.global_image}{markers.image * kept[0]}{markers.fake}"


def image_prompt(geometry: TileGeometry, counts: Sequence[int] | None = None) -> str:
    """The family's expansion with default markers; `counts` None means every token kept."""
    if counts is None:
        counts = [geometry.tokens_per_partition] * geometry.num_partitions
    if geometry.family == "internvl":
        return internvl_image_prompt(_counts(counts, geometry.num_partitions))
    return smolvlm_image_prompt(geometry, counts)


def _counts(counts: Sequence[int], partitions: int | None = None) -> list[int]:
    """Non-negative integer counts, one per partition when `partitions` is given."""
    values = [int(c) for c in counts]
    if (partitions is not None and len(values) != partitions) or min(values, default=0) < 0:
        want = f"{partitions} non-negative counts" if partitions else "non-negative counts"
        raise InvalidArgumentError(expected("kept token counts", want, list(counts)))
    return values
