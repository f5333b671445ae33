"""The next token of one row: greedy (argmax, as `generate` picks it) or seeded sampling.

Greedy unless temperature > 0, like `edge-hired run` without --do-sample; sampling draws from a
per-request generator seeded with the request's `seed`, so a seeded request repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sampler:
    """How one request picks its tokens."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int = 0
    _generator: torch.Generator | None = field(default=None, repr=False)

    @property
    def greedy(self) -> bool:
        return not self.temperature

    def choose(self, logits: torch.Tensor) -> int:
        """A token id from [V] float32 logits."""
        if self.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / float(self.temperature), dim=-1)
        if self.top_p is not None and self.top_p < 1:
            probs = _nucleus(probs, self.top_p)
        if self._generator is None:
            self._generator = torch.Generator(device=probs.device).manual_seed(self.seed)
        return int(torch.multinomial(probs, 1, generator=self._generator))


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability reaches `top_p`."""
    ordered, index = torch.sort(probs, descending=True)
    outside = ordered.cumsum(-1) - ordered > top_p
    ordered[outside] = 0
    return torch.zeros_like(probs).scatter(-1, index, ordered)
