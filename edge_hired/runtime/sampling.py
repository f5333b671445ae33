"""The one token sampler of `run` and `serve`: the same options and seed give the same tokens.

Order, fixed here once: repetition penalty -> temperature -> top-k -> top-p -> a draw from the
request's own `torch.Generator` seeded with `seed` (never the global RNG, so requests batched
together do not disturb each other). Greedy (argmax) unless sampling is asked for; the
repetition penalty applies to greedy picks too, as transformers' `generate` applies it. An
unset option is off: no top-k unless asked (transformers' `generate` would default to 50).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edge_hired.errors import InvalidArgumentError, expected


@dataclass(frozen=True)
class SamplingOptions:
    """Generation settings, named as transformers names them."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidArgumentError(
                expected("max_new_tokens", "a positive integer", self.max_new_tokens)
            )
        for name in ("temperature", "repetition_penalty"):
            value = getattr(self, name)
            if value is not None and value <= 0 and (name != "temperature" or self.do_sample):
                raise InvalidArgumentError(expected(name, "a positive number", value))
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidArgumentError(expected("top_p", "a number in (0, 1]", self.top_p))
        if self.top_k is not None and self.top_k < 1:
            raise InvalidArgumentError(expected("top_k", "a positive integer", self.top_k))


@dataclass
class Sampler:
    """Picks one request's tokens; holds its generator and what it picked (for the penalty)."""

    options: SamplingOptions = field(default_factory=SamplingOptions)
    eos_ids: frozenset[int] = frozenset()
    min_new_tokens: int = 0  # EOS is not picked before this many tokens (`generate`'s rule)
    picked: list[int] = field(default_factory=list)
    _generator: torch.Generator | None = field(default=None, repr=False)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token id from [V] logits (any float dtype, any device)."""
        scores = logits.float()
        if len(self.picked) < self.min_new_tokens and self.eos_ids:
            scores = scores.index_fill(-1, _ids(self.eos_ids, scores.device), float("-inf"))
        scores = penalized(scores, self.picked, self.options.repetition_penalty)
        token = self._draw(scores) if self.options.do_sample else int(torch.argmax(scores))
        self.picked.append(token)
        return token

    def _draw(self, scores: torch.Tensor) -> int:
        options = self.options
        scores = scores / float(options.temperature or 1.0)
        scores = keep_top_p(keep_top_k(scores, options.top_k), options.top_p)
        if self._generator is None:
            self._generator = torch.Generator(device=scores.device).manual_seed(options.seed)
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._generator))


def penalized(scores: torch.Tensor, seen: list[int], penalty: float | None) -> torch.Tensor:
    """CTRL's penalty on tokens already picked: positive scores / penalty, negative * penalty."""
    if not penalty or penalty == 1.0 or not seen:
        return scores
    index = _ids(seen, scores.device)
    picked = scores[index]
    scores = scores.clone()
    scores[index] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return scores


def keep_top_k(scores: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Scores outside the `top_k` highest set to -inf (ties at the k-th score are kept)."""
    if top_k is None or top_k >= scores.shape[-1]:
        return scores
    kth = torch.topk(scores, top_k).values[-1]
    return scores.masked_fill(scores < kth, float("-inf"))


def keep_top_p(scores: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Scores outside the smallest most-likely set whose probability reaches `top_p` -> -inf."""
    if top_p is None or top_p >= 1.0:
        return scores
    ordered, index = torch.sort(scores, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    outside = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reached p
    outside[0] = False
    return scores.scatter(-1, index[outside], float("-inf"))


def _ids(ids, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(sorted(set(ids)), dtype=torch.long, device=device)
