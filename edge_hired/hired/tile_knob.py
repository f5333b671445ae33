"""The tiled families' own token knob, as the baseline HiRED is compared against.

InternVL sends fewer tokens when `max_patches` is lower (fewer 448 px tiles), SmolVLM when
`size.longest_edge` is (fewer 512 / 384 px tiles). Sending K tokens "by resizing" means the
largest knob value whose image costs at most K tokens: coarse steps of one tile, a global view
always included. Pure: the caller passes how a knob value becomes a geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired.tiles import TileGeometry


def knob_for_tokens(
    geometry_at: Callable[[int], TileGeometry], values: Sequence[int], tokens: int
) -> int:
    """The largest of `values` whose geometry has at most `tokens` LLM tokens (else the least)."""
    if not values:
        raise InvalidArgumentError(expected("knob values", "at least one", list(values)))
    ordered = sorted(int(v) for v in values)
    fitting = [v for v in ordered if geometry_at(v).num_tokens <= tokens]
    return fitting[-1] if fitting else ordered[0]
