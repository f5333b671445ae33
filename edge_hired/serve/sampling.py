"""A chat request's sampling fields -> the runtime's `SamplingOptions` (one sampler for all).

Greedy unless `temperature` > 0 (then `do_sample`, as `edge-hired run --do-sample
--temperature T`); `top_p`, the `top_k` and `repetition_penalty` extensions and `seed` mean what
`run`'s flags of the same names mean, so the same request gives `run`'s tokens.
"""

from __future__ import annotations

from edge_hired.runtime.sampling import SamplingOptions
from edge_hired.serve.schemas import ChatRequest


def request_sampling(request: ChatRequest, max_tokens: int) -> SamplingOptions:
    """The request's sampling options (its `seed` defaults to 0, `run`'s default)."""
    sample = bool(request.temperature)
    return SamplingOptions(
        max_new_tokens=max_tokens,
        do_sample=sample,
        temperature=request.temperature if sample else None,
        top_p=request.top_p if sample else None,
        top_k=request.top_k if sample else None,
        repetition_penalty=request.repetition_penalty,
        seed=request.seed or 0,
    )
