"""The resize baseline's knob choice: the largest setting that sends at most K tokens."""

from __future__ import annotations

import pytest

from edge_hired.errors import InvalidArgumentError
from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.hired.tile_knob import knob_for_tokens


def internvl_at(size: tuple[int, int]):  # type: ignore[no-untyped-def]
    return lambda tiles: internvl_geometry(size, max_tiles=tiles)


@pytest.mark.parametrize(
    ("tokens", "knob"),
    # 448 x 1344: 1 tile -> 256 tokens, 2 -> 1x2 + thumbnail = 768, 3..12 -> 1x3 + thumbnail = 1024
    [(10_000, 12), (1024, 12), (1023, 2), (768, 2), (767, 1), (256, 1), (100, 1)],
)
def test_internvl_max_patches_for_a_token_count(tokens: int, knob: int) -> None:
    assert knob_for_tokens(internvl_at((448, 1344)), range(1, 13), tokens) == knob


def test_smolvlm_longest_edge_for_a_token_count() -> None:
    # 300 x 400 at longest edge 512: one view (64); 1024: 2x2 + global (320); 1536: 3x3 + global
    # (640); 2048: 3x4 + global (832)
    def at(edge: int):  # type: ignore[no-untyped-def]
        return smolvlm_geometry((300, 400), longest_edge=edge)

    edges = [512, 1024, 1536, 2048]
    assert [at(e).num_tokens for e in edges] == [64, 320, 640, 832]
    assert knob_for_tokens(at, edges, 166) == 512  # HiRED's 20% of 832
    assert knob_for_tokens(at, edges, 700) == 1536


def test_no_values_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        knob_for_tokens(internvl_at((448, 448)), [], 10)
