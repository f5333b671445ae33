"""Where each prompt and answer token sits, as the language model's `position_ids`.

LLaVA's LLM reads one position per token, the sequence index (`TEXT_POSITIONS`). The Qwen
families read 3-D M-RoPE positions (`RopePositions`): the prefix's kept tokens keep their stock
(t, h, w) positions (`runtime.qwen_positions.prune_prompt`), and every token after the image
sits at sequence index + `delta` on all three axes, delta = unpruned maximum + 1 - kept length,
which is how the stock model continues after an image. The engine asks a request's positions
object for the suffix's positions and, per decode step, for each row's next position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextPositions:
    """1-D positions: the sequence index."""

    def span(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """[1, stop - start] positions of prompt tokens start..stop-1."""
        return torch.arange(start, stop, device=device)[None]

    def rows(self, indices: list[int], device: torch.device) -> torch.Tensor:
        """[B, 1] positions of one new token per row at these sequence indices."""
        return torch.as_tensor(indices, dtype=torch.long, device=device)[:, None]


TEXT_POSITIONS = TextPositions()


@dataclass(frozen=True)
class RopePositions:
    """3-D M-RoPE positions: [4, 1, P] for the prefix, then sequence index + delta."""

    prefix: torch.Tensor  # [4, 1, P] (sequence index, t, h, w) of the kept prefix
    delta: int

    def span(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """[4, 1, stop - start]: the prefix's own positions, then the text rule after it."""
        known = self.prefix.shape[-1]
        head = self.prefix[:, :, start : min(stop, known)].to(device)
        index = torch.arange(max(start, known), stop, device=device)
        tail = torch.stack([index, *(index + self.delta for _ in range(3))])[:, None]
        return torch.cat([head, tail.to(head.dtype)], dim=-1)

    def step(self, index: int) -> torch.Tensor:
        """[4] the position of the token at sequence index `index` (after the prefix)."""
        return torch.tensor([index, *(index + self.delta for _ in range(3))], dtype=torch.long)


def step_positions(
    schemes: list[TextPositions | RopePositions], indices: list[int], device: torch.device
) -> torch.Tensor:
    """Positions of one new token per row: [B, 1] for text rows, [4, B, 1] for M-RoPE rows."""
    if all(isinstance(s, TextPositions) for s in schemes):
        return TEXT_POSITIONS.rows(indices, device)
    columns = [_rope(s).step(i) for s, i in zip(schemes, indices, strict=True)]
    return torch.stack(columns, dim=1)[:, :, None].to(device)


def _rope(scheme: TextPositions | RopePositions) -> RopePositions:
    """A text row beside M-RoPE rows sits at its index on every axis (delta 0)."""
    return scheme if isinstance(scheme, RopePositions) else RopePositions(torch.empty(4, 1, 0), 0)
