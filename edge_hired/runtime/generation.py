"""`run`'s generation: a batch of one over the engine, timed, its text streamed as it comes.

TTFT is measured from the request start (before the image is read) to the moment the first new
token is picked and its text handed on, which is when a user would see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from edge_hired.runtime.detokenize import IncrementalDecoder
from edge_hired.runtime.engine import Batch, Engine, Mark, Prefill, Prefix, finish_reason
from edge_hired.runtime.prefix import ImageInput, SelectionOptions
from edge_hired.runtime.sampling import Sampler, SamplingOptions

__all__ = ["Generation", "GenerationRequest", "SamplingOptions", "generate"]


@dataclass(frozen=True)
class GenerationRequest:
    """One answer's inputs: the prompt split at the image, the image and the selection."""

    prefix_ids: torch.Tensor
    suffix_ids: torch.Tensor
    image: ImageInput | None
    selection: SelectionOptions


@dataclass(frozen=True)
class Generation:
    """The answer's ids, its prefix and prompt length, when the first token came and the last."""

    token_ids: list[int]
    prefix: Prefix
    prompt_tokens: int
    first_token_at: float
    finished_at: float
    compile_s: float = 0.0  # compiling the decode step during this answer (not decoding)

    def decode_tokens_per_s(self) -> float:
        """Tokens after the first, per second of decoding (0 when only one token)."""
        span = self.finished_at - self.first_token_at - self.compile_s
        return (len(self.token_ids) - 1) / span if len(self.token_ids) > 1 and span > 0 else 0.0


def generate(
    engine: Engine,
    request: GenerationRequest,
    options: SamplingOptions,
    decode: Callable[[list[int]], str],
    on_text: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    mark: Mark | None = None,
) -> Generation:
    """Prefill, then decode one row until EOS or `max_new_tokens`, streaming text to `on_text`."""
    prefill = engine.prefill(
        request.prefix_ids, request.suffix_ids, request.image, request.selection, mark
    )
    sampler, text = engine.sampler(options), IncrementalDecoder(decode)
    token = sampler.choose(prefill.logits)
    first_at = clock()
    _send(on_text, text.add((token,)))
    _decode_rest(engine, prefill, sampler, token, lambda t: _send(on_text, text.add((t,))))
    _send(on_text, text.flush())
    prompt_tokens, done_at = prefill.prompt_tokens, clock()
    compiled = engine.static.step.record.take_seconds() if engine.static is not None else 0.0
    return Generation(
        list(sampler.picked), prefill.prefix, prompt_tokens, first_at, done_at, compiled
    )


def _decode_rest(
    engine: Engine, prefill: Prefill, sampler: Sampler, token: int, emit: Callable[[int], None]
) -> None:
    """Decode steps of a batch of one after the first token."""
    batch, position = Batch(engine), prefill.prompt_tokens
    limit = sampler.options.max_new_tokens
    batch.join(prefill, reserve=limit)
    while finish_reason(token, len(sampler.picked), limit, engine.eos_ids) is None:
        token = sampler.choose(batch.step([token], [position])[0])
        position += 1
        emit(token)


def _send(on_text: Callable[[str], None] | None, text: str) -> None:
    if text and on_text is not None:
        on_text(text)
