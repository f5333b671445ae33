"""Greedy or sampled generation by the stock LLM from assembled input embeddings, timed.

TTFT is measured from the request start (before the image is read) to the moment the first new
token reaches the streamer, which is when a user would see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch


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

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `generate`, leaving unset options to the model's defaults."""
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        if not self.do_sample:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass
class IncrementalDecoder:
    """Token ids in, the text they add out, decoding a short window per call (O(n) in all).

    Re-decoding the whole answer at every token costs O(n^2). The window holds the ids whose
    text was returned last (`_prefix` to `_read`) as context, so tokenizers that drop a leading
    space at the start of a decode still produce it, then the unread ids. Text ending in an
    incomplete multi-byte character waits for the next id (`final` sends what there is).
    """

    decode: Callable[[list[int]], str]
    token_ids: list[int] = field(default_factory=list)
    _prefix: int = 0
    _read: int = 0

    def add(self, ids: Iterable[int], final: bool = False) -> str:
        """Append `ids`; return the text they complete ("" while a character is unfinished)."""
        self.token_ids.extend(ids)
        context = self.decode(self.token_ids[self._prefix : self._read])
        window = self.decode(self.token_ids[self._prefix :])
        if len(window) <= len(context) or (not final and window.endswith("\ufffd")):
            return ""
        self._prefix, self._read = self._read, len(self.token_ids)
        return window[len(context) :]


@dataclass
class TimingStreamer:
    """A transformers streamer that timestamps the first token and streams decoded text."""

    decode: Callable[[list[int]], str]
    on_text: Callable[[str], None] | None = None
    clock: Callable[[], float] = time.perf_counter  # DeviceClock.mark on CUDA
    first_token_at: float | None = None
    _seen_prompt: bool = False
    _text: IncrementalDecoder | None = None

    def __post_init__(self) -> None:
        self._text = IncrementalDecoder(self.decode)

    @property
    def token_ids(self) -> list[int]:
        """The new tokens so far."""
        return self._text.token_ids

    def put(self, value: torch.Tensor) -> None:
        """Called by generate: first with the prompt ids, then with each new token."""
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        if self.first_token_at is None:
            self.first_token_at = self.clock()
        self._send(self._text.add(int(t) for t in value.reshape(-1)))

    def end(self) -> None:
        """Called by generate when it stops."""
        self._send(self._text.add((), final=True))

    def _send(self, text: str) -> None:
        if text and self.on_text:
            self.on_text(text)


@dataclass(frozen=True)
class GenerationTiming:
    """When the first token came and how fast the rest followed."""

    token_ids: list[int]
    first_token_at: float
    finished_at: float

    def decode_tokens_per_s(self) -> float:
        """Tokens after the first, per second of decoding (0 when only one token)."""
        span = self.finished_at - self.first_token_at
        return (len(self.token_ids) - 1) / span if len(self.token_ids) > 1 and span > 0 else 0.0


def generate_from_embeddings(
    llm: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    options: SamplingOptions,
    streamer: TimingStreamer,
    pad_token_id: int | None,
    clock: Callable[[], float] = time.perf_counter,
) -> GenerationTiming:
    """Run `llm.generate(inputs_embeds=...)` and time it through the streamer (and `clock`)."""
    if options.do_sample:
        torch.manual_seed(options.seed)
    mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
    with torch.inference_mode():
        llm.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            streamer=streamer,
            pad_token_id=pad_token_id,
            **options.generate_kwargs(),
        )
    finished = clock()
    first = streamer.first_token_at if streamer.first_token_at is not None else finished
    return GenerationTiming(list(streamer.token_ids), first, finished)
