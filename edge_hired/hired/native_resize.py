"""The resize baseline: K visual tokens by lowering the processor's `max_pixels`, nothing dropped.

The Qwen processors' own knob is the pixel cap of `smart_resize`. A cap of K x factor^2 pixels
(factor = patch x merge) gives at most K merge units, because the shrink step floors both sides
so the area never exceeds the cap (except where a side is held at its one-factor minimum: a
very long image at a tiny K gets the fewest tokens it can have); flooring often lands well
under K, so the caps up to
4 K x factor^2 are tried too and the one giving the most tokens without exceeding K wins (the
smallest such cap on ties). The baseline keeps every token of that smaller image: HiRED / DART
at K tokens against the model at (at most) K tokens by resolution alone.
"""

from __future__ import annotations

from edge_hired.errors import BudgetError, expected
from edge_hired.hired.native_geometry import NativeGeometry, smart_resize

#: Caps tried: K x factor^2 .. SEARCH x K x factor^2.
SEARCH = 4


def resize_limits(geometry: NativeGeometry, budget: int, min_pixels: int) -> tuple[int, int]:
    """(min_pixels, max_pixels) that give the most tokens, at most `budget`, for this image."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise BudgetError(expected("resize budget", "a positive token count", budget))
    unit = (geometry.patch_size * geometry.merge) ** 2
    best, best_cap = -1, budget * unit
    for cap in range(budget * unit, SEARCH * budget * unit + 1, unit):
        count = tokens_under(geometry, min(min_pixels, cap), cap)
        if best < count <= budget:
            best, best_cap = count, cap
    return min(min_pixels, best_cap), best_cap


def tokens_under(geometry: NativeGeometry, min_pixels: int, max_pixels: int) -> int:
    """Merge units of the image under these pixel limits."""
    factor = geometry.patch_size * geometry.merge
    height, width = smart_resize(*geometry.image_size, factor, min_pixels, max_pixels)
    return (height // factor) * (width // factor)
